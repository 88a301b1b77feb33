// The web page end to end in headless Chromium: starts `diffuse serve` on a tiny model, types
// a prompt, generates, watches the progress and the image appear, reuses its parameters, and
// cancels a second job. Debian's chromium is driven by npm's playwright-core (third_party/npm).
// Exits 77 (ctest: skipped) when chromium, playwright-core or the tiny models are absent.
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SKIP = 77;
const here = path.dirname(fileURLToPath(import.meta.url));
const sourceDir = process.env.DIFFUSE_SOURCE_DIR || path.resolve(here, "..", "..");
const skip = (why) => { console.log("SKIP: " + why); process.exit(SKIP); };
const fail = (why) => { console.error("FAIL: " + why); process.exitCode = 1; throw new Error(why); };
const log = (...a) => console.log("ui.test:", ...a);

const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!fs.existsSync(chromiumPath)) skip(`${chromiumPath} is not installed (apt-get install chromium)`);
const npmDir = process.env.DIFFUSE_NPM_DIR || path.join(sourceDir, "third_party", "npm");
let playwright;
try {
  playwright = createRequire(path.join(npmDir, "package.json"))("playwright-core");
} catch (e) {
  skip(`playwright-core is not installed in ${npmDir} (scripts/setup.sh installs it)`);
}
const cli = process.env.DIFFUSE_CLI || path.join(sourceDir, "build", "diffuse");
if (!fs.existsSync(cli)) skip(`the diffuse binary ${cli} is not built`);

// A tiny ordinary (4-channel) diffusers model from the reference data.
const refDir = process.env.DIFFUSE_REFERENCE_DIR || path.resolve(sourceDir, "..", "shared", "reference");
const tiny = (fs.existsSync(refDir) ? fs.readdirSync(refDir).sort() : []).find((name) => {
  try {
    const d = path.join(refDir, name, "diffusers");
    const unet = JSON.parse(fs.readFileSync(path.join(d, "unet", "config.json"), "utf8"));
    return fs.existsSync(path.join(d, "model_index.json")) && unet.in_channels === 4;
  } catch (e) {
    return false;
  }
});
if (!tiny) skip(`no tiny diffusers model in ${refDir}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "diffuse-ui-"));
fs.mkdirSync(path.join(tmp, "models"));
fs.symlinkSync(path.join(refDir, tiny, "diffusers"), path.join(tmp, "models", tiny));

const servers = [];
let context;
const watchdog = setTimeout(() => { console.error("FAIL: timed out"); cleanup(); process.exit(1); }, 240000);

function cleanup() {
  for (const p of servers) {
    try { if (p.exitCode === null) p.kill("SIGTERM"); } catch (e) { /* gone */ }
  }
  try { fs.rmSync(tmp, { recursive: true, force: true }); } catch (e) { /* best effort */ }
}

// Starts `diffuse serve` and resolves with its URL once it listens.
function startServer(extraArgs = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cli, ["serve", "--model-dir", path.join(tmp, "models"), "--port", "0",
                             "--max-size", "512", "--max-steps", "1000", "-t", "1", ...extraArgs],
                       { stdio: ["ignore", "pipe", "pipe"] });
    servers.push(proc);
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve({ proc, url: m[1] });
    });
    let err = "";
    proc.stderr.on("data", (d) => { err += d; if (err.length > 20000) err = err.slice(-10000); });
    proc.on("exit", (code) => reject(new Error(`diffuse serve exited (${code}): ${err}`)));
  });
}

// SIGTERM stops a server cleanly (exit code 0).
async function stopServer(proc) {
  proc.removeAllListeners("exit");
  const exited = new Promise((resolve) => proc.on("exit", (code, sig) => resolve([code, sig])));
  proc.kill("SIGTERM");
  const [code, sig] = await exited;
  if (code !== 0) fail(`diffuse serve exited with ${code} ${sig || ""} on SIGTERM`);
}

async function main() {
  const { proc: server, url } = await startServer();
  log("server at", url, "model", tiny);
  context = await playwright.chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  if (!models.includes(tiny)) fail(`model list ${JSON.stringify(models)} lacks ${tiny}`);
  if (await page.isVisible("#api-key-row")) fail("the API key field shows on a server without a key");

  // 1. Type a prompt and generate; the progress moves, then the image appears.
  await page.fill("#prompt", "a red fox in the snow");
  await page.fill("#negative_prompt", "blurry");
  await page.selectOption("#sampler", "Euler");
  await page.fill("#steps", "120");
  await page.fill("#width", "128");
  await page.fill("#height", "128");
  await page.fill("#seed", "1234");
  await page.click("#generate");
  await page.waitForFunction(() => {
    const p = document.querySelector("#progress");
    return p.value > 0 && p.value < 1 && /step \d+\/120/.test(document.querySelector("#progress-text").textContent);
  }, null, { timeout: 60000, polling: 20 });
  log("progress seen:", await page.textContent("#progress-text"));
  const img = await page.waitForSelector('.job[data-state="done"] img.result', { timeout: 120000 });
  const size = await img.evaluate((i) => i.decode().then(() => [i.naturalWidth, i.naturalHeight]));
  if (size[0] !== 128 || size[1] !== 128) fail(`image is ${size}, expected 128x128`);
  const caption = await page.textContent('.job[data-state="done"] figcaption');
  for (const want of ["a red fox in the snow", "Negative prompt: blurry", "Steps: 120", "Sampler: Euler", "Seed: 1234", "Size: 128x128", `Model: ${tiny}`])
    if (!caption.includes(want)) fail(`parameters "${caption}" lack "${want}"`);
  log("image shown with parameters:", caption.split("\n").join(" | "));
  if ((await page.textContent("#progress-text")).trim() !== "idle") fail("the progress line did not return to idle");

  // 2. Reuse puts the parameters back into the form with one click.
  await page.fill("#prompt", "something else");
  await page.fill("#seed", "-1");
  await page.fill("#steps", "5");
  await page.click('.job[data-state="done"] button.reuse');
  const form = await page.evaluate(() => ["prompt", "negative_prompt", "seed", "steps", "width", "sampler"].map((id) => document.getElementById(id).value));
  if (JSON.stringify(form) !== JSON.stringify(["a red fox in the snow", "blurry", "1234", "120", "128", "Euler"]))
    fail(`reuse filled ${JSON.stringify(form)}`);

  // 3. A second, long job: cancelled while it runs.
  await page.fill("#steps", "1000");
  await page.fill("#seed", "99");
  await page.click("#generate");
  await page.waitForFunction(() => {
    const card = document.querySelector("#gallery .job");
    return card && card.dataset.state === "running" && card.querySelector("progress").value > 0;
  }, null, { timeout: 60000, polling: 20 });
  const jobId = await page.$eval("#gallery .job", (c) => c.dataset.jobId);
  await page.click("#cancel");
  await page.waitForSelector(`.job[data-job-id="${jobId}"][data-state="cancelled"]`, { timeout: 30000 });
  if (await page.$(`.job[data-job-id="${jobId}"] img`)) fail("the cancelled job shows an image");
  const state = await page.evaluate((id) => fetch("/api/jobs/" + id).then((r) => r.json()), jobId);
  if (state.state !== "cancelled" || state.step >= 1000) fail(`server says ${JSON.stringify(state)}`);
  log(`second job cancelled at step ${state.step}/1000`);
  if (await page.$$eval(".job", (cs) => cs.length) !== 2) fail("expected two job cards");
  if (!(await page.isDisabled("#cancel"))) fail("Cancel stays enabled with nothing running");

  if (errors.length) fail("page errors: " + errors.join("; "));
  if (process.env.DIFFUSE_UI_SCREENSHOT) await page.screenshot({ path: process.env.DIFFUSE_UI_SCREENSHOT, fullPage: true });
  await stopServer(server);

  // 4. A server with --api-key: the page asks for the key, then works with it.
  const keyed = await startServer(["--api-key", "ui-test-key"]);
  await page.goto(keyed.url);
  await page.waitForSelector("#api-key-row", { state: "visible", timeout: 30000 });
  if (!/unauthorized/.test(await page.textContent("#message"))) fail("no 401 message on a keyed server");
  await page.fill("#api-key", "ui-test-key");
  await page.click("#api-key-save");
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  await page.fill("#prompt", "with a key");
  for (const [id, v] of [["#steps", "2"], ["#width", "64"], ["#height", "64"]]) await page.fill(id, v);
  await page.click("#generate");
  await page.waitForSelector('.job[data-state="done"] img.result', { timeout: 60000 });
  const keyedErrors = errors.filter((e) => !/status of 401/.test(e));
  if (keyedErrors.length) fail("page errors: " + keyedErrors.join("; "));
  await context.close();
  context = null;
  await stopServer(keyed.proc);
  log("passed");
}

main()
  .catch((e) => { if (!process.exitCode) { console.error("FAIL:", e.message || e); process.exitCode = 1; } })
  .finally(async () => {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    cleanup();
  });
