// Drives Syncline's dashboard in headless Chromium (playwright-core) for the
// end-to-end tests. Same line protocol as driver.mjs: one JSON command per
// stdin line ({seq, op, ...}); one JSON reply per command on stdout
// ({seq, ok, value} or {seq, ok: false, error}).
//
// Selectors are Playwright's (e.g. "data-testid=login-key", CSS). Waits take
// a deadline in milliseconds (`timeoutMs`) and fail with what the page showed.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.SYNCLINE_CHROMIUM || "/usr/bin/chromium";
// As root Chromium needs --no-sandbox; the rest keep it from calling out to
// Google's services, which this kind of closed network refuses.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const DEFAULT_TIMEOUT_MS = 10000;

let browser = null;
const pages = new Map(); // name -> {context, page, console: [string]}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function pageOf(cmd) {
  const entry = pages.get(cmd.page);
  if (!entry) throw new Error(`no page named ${JSON.stringify(cmd.page)}`);
  return entry.page;
}

/** innerText of every element matching selector, right now. */
async function textsNow(page, selector) {
  return page.locator(selector).evaluateAll((nodes) => nodes.map((n) => n.innerText));
}

/** Poll until check(texts) holds or the deadline passes; the error says what was seen. */
async function pollTexts(page, selector, check, what, timeout) {
  const deadline = Date.now() + (timeout || DEFAULT_TIMEOUT_MS);
  let texts = [];
  for (;;) {
    texts = await textsNow(page, selector);
    const found = check(texts);
    if (found !== undefined) return found;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what} in ${selector}; it showed ${JSON.stringify(texts)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function handle(cmd) {
  switch (cmd.op) {
    case "launch": {
      // playwright-core gives Chromium a new, empty profile directory of its own.
      // A context per page keeps sessionStorage apart; one browser serves them all.
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
      return browser.version();
    }
    case "newPage": {
      const context = await browser.newContext({ viewport: cmd.viewport || { width: 1440, height: 900 } });
      const page = await context.newPage();
      const consoleLines = [];
      page.on("console", (msg) => consoleLines.push(`[${msg.type()}] ${msg.text()}`));
      page.on("pageerror", (error) => consoleLines.push(`[pageerror] ${error.message}`));
      page.on("requestfailed", (request) =>
        consoleLines.push(`[requestfailed] ${request.url()} ${request.failure() && request.failure().errorText}`),
      );
      pages.set(cmd.name, { context, page, console: consoleLines });
      return null;
    }
    case "goto": {
      const response = await pageOf(cmd).goto(cmd.url, { waitUntil: "load" });
      return response ? response.status() : null;
    }
    case "reload":
      await pageOf(cmd).reload({ waitUntil: "load" });
      return null;
    case "url":
      return pageOf(cmd).url();
    case "click":
      await pageOf(cmd).locator(cmd.selector).first().click({ timeout: cmd.timeoutMs || DEFAULT_TIMEOUT_MS });
      return null;
    case "fill":
      await pageOf(cmd).locator(cmd.selector).first().fill(cmd.value, { timeout: cmd.timeoutMs || DEFAULT_TIMEOUT_MS });
      return null;
    case "press":
      await pageOf(cmd).locator(cmd.selector).first().press(cmd.key, { timeout: cmd.timeoutMs || DEFAULT_TIMEOUT_MS });
      return null;
    case "selectOption":
      await pageOf(cmd).locator(cmd.selector).first().selectOption(cmd.value, { timeout: cmd.timeoutMs || DEFAULT_TIMEOUT_MS });
      return null;
    case "inputValue":
      return pageOf(cmd).locator(cmd.selector).first().inputValue({ timeout: cmd.timeoutMs || DEFAULT_TIMEOUT_MS });
    case "texts":
      return textsNow(pageOf(cmd), cmd.selector);
    case "count":
      return pageOf(cmd).locator(cmd.selector).count();
    case "waitFor":
      await pageOf(cmd)
        .locator(cmd.selector)
        .first()
        .waitFor({ state: cmd.state || "visible", timeout: cmd.timeoutMs || DEFAULT_TIMEOUT_MS });
      return null;
    case "waitText": {
      // Some element matching selector whose text contains `contains`; returns its text.
      return pollTexts(
        pageOf(cmd),
        cmd.selector,
        (texts) => texts.find((t) => t.includes(cmd.contains)),
        JSON.stringify(cmd.contains),
        cmd.timeoutMs,
      );
    }
    case "waitNoText": {
      // No element matching selector contains `contains` (any more).
      return pollTexts(
        pageOf(cmd),
        cmd.selector,
        (texts) => (texts.some((t) => t.includes(cmd.contains)) ? undefined : texts),
        `no ${JSON.stringify(cmd.contains)}`,
        cmd.timeoutMs,
      );
    }
    case "eval":
      return pageOf(cmd).evaluate(cmd.expression);
    case "screenshot":
      await pageOf(cmd).screenshot({ path: cmd.path, fullPage: cmd.fullPage !== false });
      return cmd.path;
    case "console":
      return pages.get(cmd.page) ? pages.get(cmd.page).console : [];
    case "closePage": {
      const entry = pages.get(cmd.page);
      if (entry) await entry.context.close();
      pages.delete(cmd.page);
      return null;
    }
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

async function shutdown() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
}

const lines = createInterface({ input: process.stdin });
const inFlight = new Set();
lines.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return;
  }
  const task = handle(cmd).then(
    (value) => emit({ seq: cmd.seq, ok: true, value: value === undefined ? null : value }),
    (e) => emit({ seq: cmd.seq, ok: false, error: String(e && e.message), name: e && e.name }),
  );
  inFlight.add(task);
  task.finally(() => inFlight.delete(task));
});
lines.on("close", async () => {
  await Promise.allSettled([...inFlight]);
  await shutdown();
  process.exit(0);
});
