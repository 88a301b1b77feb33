#!/usr/bin/env node
// Builds a captioned emoji image folder for `diffuse train` / `diffuse eval` from the npm packages
// that scripts/fetch_data.sh installs (emoji-datasource-google@16.0.0, emojilib@4.0.3):
//
//   node scripts/emoji_dataset.mjs OUT [--keywords N] [--heldout-percent P] [--npm DIR]
//
// writes OUT/train/ and OUT/heldout/, each with 64x64 RGB PNGs (the RGBA emoji composited onto
// white, so that no loader has to guess what the transparent pixels hold) and a metadata.jsonl
// with one {"file_name": ..., "text": ...} line per image.
//
// Captions: the emoji's CLDR name from emojilib (its first keyword, underscores as spaces, e.g.
// "grinning face with big eyes", "flag ascension island"); where emojilib has none or two emoji
// would share one, its short name ("person in tuxedo", "hash"), then emoji-datasource's name. Skin-tone variants append the tones
// as CLDR does: "waving hand: medium skin tone", "kiss man man: light skin tone, dark skin tone"
// (one tone when both are equal). --keywords N appends up to N further emojilib keywords that are
// not already words of the name ("grinning face, smile, happy"); the default is none, so that a
// prompt is simply an emoji's name. Every caption is distinct (checked).
//
// Split: an image is held out when the FNV-1a hash of its caption (without keywords), mod 1000,
// is below 10 * P (P = 5 by default: about 5%); held-out entries are listed in hash order, so the first N of them
// are a deterministic sample across categories. Deterministic: same packages, same folders.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const SKIN_TONES = {
  '1F3FB': 'light skin tone',
  '1F3FC': 'medium-light skin tone',
  '1F3FD': 'medium skin tone',
  '1F3FE': 'medium-dark skin tone',
  '1F3FF': 'dark skin tone',
};

function fail(msg) {
  console.error(`emoji_dataset: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { out: null, keywords: 0, heldoutPercent: 5, npm: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--keywords') opts.keywords = Number(value());
    else if (a === '--heldout-percent') opts.heldoutPercent = Number(value());
    else if (a === '--npm') opts.npm = value();
    else if (a === '-h' || a === '--help') {
      console.log('usage: node scripts/emoji_dataset.mjs OUT [--keywords N] [--heldout-percent P] [--npm DIR]');
      process.exit(0);
    } else if (a.startsWith('-')) fail(`unknown option ${a}`);
    else if (opts.out === null) opts.out = a;
    else fail(`unexpected argument ${a}`);
  }
  if (opts.out === null) fail('usage: node scripts/emoji_dataset.mjs OUT [--keywords N] [--heldout-percent P]');
  if (!Number.isInteger(opts.keywords) || opts.keywords < 0) fail('--keywords must be an integer >= 0');
  if (!(opts.heldoutPercent > 0 && opts.heldoutPercent < 100)) fail('--heldout-percent must lie in (0, 100)');
  if (opts.npm === null) {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    opts.npm = path.join(root, 'third_party', 'npm', 'node_modules');
  }
  return opts;
}

// --- PNG (8-bit, non-interlaced gray / RGB / palette / gray+alpha / RGBA) -> RGB on white ----
const CRC_TABLE = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf) {
  let c = -1;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function decodePng(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 8 || buf.readUInt32BE(0) !== 0x89504e47) fail(`${file}: not a PNG`);
  let off = 8, width = 0, height = 0, depth = 0, type = 0, interlace = 0, palette = null;
  let trns = null;
  const idat = [];
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const kind = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (kind === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      [depth, type] = [data[8], data[9]];
      interlace = data[12];
    } else if (kind === 'PLTE') palette = data;
    else if (kind === 'tRNS') trns = data;
    else if (kind === 'IDAT') idat.push(data);
    else if (kind === 'IEND') break;
    off += 12 + len;
  }
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[type];
  if (depth !== 8 || channels === undefined || interlace !== 0)
    fail(`${file}: unsupported PNG (bit depth ${depth}, colour type ${type}, interlace ${interlace})`);
  if (type === 3 && !palette) fail(`${file}: palette PNG without a PLTE chunk`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) fail(`${file}: truncated image data`);
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) fail(`${file}: bad PNG filter ${filter}`);
      px[y * stride + x] = (line[x] + pred) & 0xff;
    }
  }
  // Composite onto white: out = c * alpha + 255 * (1 - alpha), rounded.
  const rgb = Buffer.alloc(width * height * 3);
  const over = (v, alpha) => Math.round((v * alpha + 255 * (255 - alpha)) / 255);
  for (let i = 0; i < width * height; i++) {
    let r, g, b, alpha = 255;
    const p = px.subarray(i * channels, (i + 1) * channels);
    if (type === 0) [r, g, b] = [p[0], p[0], p[0]];
    else if (type === 2) [r, g, b] = [p[0], p[1], p[2]];
    else if (type === 4) [r, g, b, alpha] = [p[0], p[0], p[0], p[1]];
    else if (type === 6) [r, g, b, alpha] = [p[0], p[1], p[2], p[3]];
    else {
      [r, g, b] = [palette[p[0] * 3], palette[p[0] * 3 + 1], palette[p[0] * 3 + 2]];
      if (trns && p[0] < trns.length) alpha = trns[p[0]];
    }
    rgb[i * 3] = over(r, alpha);
    rgb[i * 3 + 1] = over(g, alpha);
    rgb[i * 3 + 2] = over(b, alpha);
  }
  return { width, height, rgb };
}

function encodePngRgb({ width, height, rgb }) {
  const chunk = (kind, data) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(kind, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);  // 8-bit RGB, deflate, no filter method, no interlace
  const raw = Buffer.alloc(height * (width * 3 + 1));  // filter 0 on every row
  for (let y = 0; y < height; y++) rgb.copy(raw, y * (width * 3 + 1) + 1, y * width * 3, (y + 1) * width * 3);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// --- captions -------------------------------------------------------------------------------
const fromUnified = (u) => String.fromCodePoint(...u.split('-').map((h) => parseInt(h, 16)));

function emojilibEntry(lib, e) {
  for (const u of [e.unified, e.non_qualified].filter(Boolean)) {
    const c = fromUnified(u);
    if (lib[c]) return lib[c];
    if (lib[c.replace(/\uFE0F/g, '')]) return lib[c.replace(/\uFE0F/g, '')];
  }
  return null;
}

const clean = (s) => s.toLowerCase().replace(/_/g, ' ').replace(/\s+/g, ' ').trim();

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

function buildEntries(emoji, lib, keywords) {
  // Base names: each emoji tries emojilib's CLDR name, then its short name, then
  // emoji-datasource's name, moving on while its current name is empty or shared with another.
  const candidates = new Map();
  for (const e of emoji) {
    const kw = emojilibEntry(lib, e);
    const names = SKIN_TONES[e.unified] ? [SKIN_TONES[e.unified]]  // the five tone swatches
                                        : [kw ? clean(kw[0]) : '', clean(e.short_name), clean(e.name)];
    candidates.set(e, { names: names.filter((n) => /[a-z0-9]/.test(n)), pick: 0, kw: kw ? kw.slice(1) : [] });
  }
  for (let changed = true; changed;) {
    changed = false;
    const count = new Map();
    for (const c of candidates.values()) count.set(c.names[c.pick], (count.get(c.names[c.pick]) || 0) + 1);
    for (const c of candidates.values())
      if (count.get(c.names[c.pick]) > 1 && c.pick + 1 < c.names.length) [c.pick, changed] = [c.pick + 1, true];
  }
  const entries = [];
  for (const e of emoji) {
    const { names, pick, kw } = candidates.get(e);
    const name = names[pick];
    const words = new Set(name.split(/[\s:,-]+/));
    const extra = kw.map(clean).filter((k) => /^[a-z0-9][a-z0-9 '&.-]*$/.test(k) && !words.has(k));
    const suffix = extra.slice(0, keywords).map((k) => `, ${k}`).join('');
    if (e.has_img_google) entries.push({ image: e.image, key: name, text: name + suffix });
    for (const [tones, v] of Object.entries(e.skin_variations || {})) {
      if (!v.has_img_google) continue;
      const names = [...new Set(tones.split('-').map((t) => SKIN_TONES[t]))];
      if (names.includes(undefined)) fail(`unknown skin tone ${tones} of ${e.name}`);
      const key = `${name}: ${names.join(', ')}`;
      entries.push({ image: v.image, key, text: key + suffix });
    }
  }
  return entries;
}

function writeSplit(dir, imgDir, entries) {
  fs.mkdirSync(dir, { recursive: true });
  const keep = new Set(entries.map((e) => e.image));
  for (const f of fs.readdirSync(dir))  // images of an earlier run with another split
    if (f.endsWith('.png') && !keep.has(f)) fs.unlinkSync(path.join(dir, f));
  const lines = [];
  for (const { image, text } of entries) {
    const png = encodePngRgb(decodePng(path.join(imgDir, image)));
    const tmp = path.join(dir, `.${image}.tmp`);
    fs.writeFileSync(tmp, png);
    fs.renameSync(tmp, path.join(dir, image));
    lines.push(JSON.stringify({ file_name: image, text }));
  }
  const tmp = path.join(dir, '.metadata.jsonl.tmp');
  fs.writeFileSync(tmp, lines.join('\n') + '\n');
  fs.renameSync(tmp, path.join(dir, 'metadata.jsonl'));
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const dsDir = path.join(opts.npm, 'emoji-datasource-google');
  const libFile = path.join(opts.npm, 'emojilib', 'dist', 'emoji-en-US.json');
  const imgDir = path.join(dsDir, 'img', 'google', '64');
  for (const f of [path.join(dsDir, 'emoji.json'), libFile, imgDir])
    if (!fs.existsSync(f)) fail(`${f} is missing: run scripts/fetch_data.sh first`);
  const emoji = JSON.parse(fs.readFileSync(path.join(dsDir, 'emoji.json'), 'utf8'));
  const lib = JSON.parse(fs.readFileSync(libFile, 'utf8'));
  emoji.sort((a, b) => a.sort_order - b.sort_order);

  const entries = buildEntries(emoji, lib, opts.keywords);
  const seen = new Map();
  for (const e of entries) {
    if (seen.has(e.text)) fail(`two images share the caption "${e.text}": ${seen.get(e.text)}, ${e.image}`);
    seen.set(e.text, e.image);
  }
  const threshold = Math.round(opts.heldoutPercent * 10);
  const train = [], heldout = [];
  for (const e of entries) (fnv1a(e.key) % 1000 < threshold ? heldout : train).push(e);
  heldout.sort((a, b) => fnv1a(a.key) - fnv1a(b.key) || (a.key < b.key ? -1 : 1));

  writeSplit(path.join(opts.out, 'train'), imgDir, train);
  writeSplit(path.join(opts.out, 'heldout'), imgDir, heldout);
  console.log(`emoji_dataset: ${train.length} training images, ${heldout.length} held out -> ${opts.out}`);
}

main();
