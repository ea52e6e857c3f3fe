// drive.mjs: a small remote control for Debian's Chromium, used by test_browser.py.
//
// Requests arrive on stdin, one JSON object a line ({"id", "cmd", ...}); each gets exactly
// one reply on stdout, a line "@@rpc " + JSON ({"id", "ok", ...} or {"id", "ok": false,
// "error"}). Keeping the scenario and its assertions in pytest (next to the harness that
// runs the services and sbctl) and only the browser here keeps this file dumb.
//
// Every page gets its own browser context, so each has its own localStorage: the guide's
// components read the token from localStorage 'authToken' on every render, and two users
// sharing one origin's storage would overwrite each other's token. The page's console,
// uncaught errors and WebSocket traffic are recorded per page and returned by `state`.
//
// The browser is never downloaded: CHROMIUM (default /usr/bin/chromium) is launched with
// a fresh profile that Playwright creates under TMPDIR and removes on close.
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const MAX_WAIT_MS = 15000;   // every wait in here; pytest waits 20 s for any answer

let browser = null;
const pages = new Map();   // name -> {context, page, console: [], sockets: []}

const redact = (s) => s.replace(/token=[^&'"\s]*/g, 'token=<redacted>');
const bounded = (ms) => Math.min(Number(ms) || MAX_WAIT_MS, MAX_WAIT_MS);

function rec(name) {
  const r = pages.get(name);
  if (!r) throw new Error(`no page named ${name}`);
  return r;
}

async function open({ name, url, token, width = 900, height = 640 }) {
  if (pages.has(name)) throw new Error(`page ${name} already open`);
  const context = await browser.newContext({ viewport: { width, height } });
  if (token !== undefined && token !== null)
    await context.addInitScript((t) => window.localStorage.setItem('authToken', t), token);
  const page = await context.newPage();
  const r = { context, page, console: [], sockets: [] };
  pages.set(name, r);
  const t0 = Date.now();
  const log = (type, text) => r.console.push({ t: Date.now() - t0, type, text: redact(text) });
  page.on('console', (m) => log(m.type(), m.text()));
  page.on('pageerror', (e) => log('pageerror', String(e)));
  page.on('websocket', (ws) => {
    const s = { url: redact(ws.url()), events: [] };
    r.sockets.push(s);
    const ev = (kind, payload) => s.events.push({ t: Date.now() - t0, kind, payload });
    ws.on('framesent', (f) => ev('sent', String(f.payload)));
    ws.on('framereceived', (f) => ev('received', String(f.payload)));
    ws.on('socketerror', (e) => ev('error', String(e)));
    ws.on('close', () => ev('close', null));
  });
  await page.goto(url, { timeout: MAX_WAIT_MS, waitUntil: 'load' });
  return {};
}

async function waitText({ name, regex, flags = '', timeout }) {
  const { page } = rec(name);
  try {
    await page.waitForFunction(
      ([re, fl]) => new RegExp(re, fl).test(document.body.innerText),
      [regex, flags], { timeout: bounded(timeout), polling: 100 });
  } catch (e) {
    throw new Error(`${name}: page text never matched /${regex}/ within ${bounded(timeout)} ms; ` +
                    `page text: ${JSON.stringify(await page.innerText('body').catch(() => '?'))}`);
  }
  return { text: await page.innerText('body') };
}

async function waitConsole({ name, regex, timeout }) {
  const r = rec(name);
  const re = new RegExp(regex);
  const deadline = Date.now() + bounded(timeout);
  for (;;) {
    const hit = r.console.find((m) => re.test(m.text));
    if (hit) return { message: hit };
    if (Date.now() > deadline)
      throw new Error(`${name}: no console message matching /${regex}/ within ` +
                      `${bounded(timeout)} ms; console: ${JSON.stringify(r.console)}`);
    await new Promise((f) => setTimeout(f, 50));
  }
}

const handlers = {
  async launch() {
    browser = await chromium.launch({
      executablePath: EXECUTABLE, headless: true, args: ARGS, timeout: MAX_WAIT_MS,
    });
    return { version: browser.version() };
  },
  open,
  wait_text: waitText,
  wait_console: waitConsole,
  // Typing and clicking go through Playwright's input events, so React sees what it
  // would see from a person: focus, key presses, input events, a click on an enabled button.
  async type({ name, selector, text, timeout }) {
    const el = rec(name).page.locator(selector);
    await el.click({ timeout: bounded(timeout) });
    await el.pressSequentially(String(text), { delay: 10, timeout: bounded(timeout) });
    return { value: await el.inputValue() };
  },
  async click({ name, selector, timeout }) {
    await rec(name).page.locator(selector).click({ timeout: bounded(timeout) });
    return {};
  },
  async state({ name }) {
    const r = rec(name);
    return { console: r.console, sockets: r.sockets,
             text: await r.page.innerText('body').catch(() => null) };
  },
  async html({ name, selector }) {
    const els = rec(name).page.locator(selector);
    return { html: await els.evaluateAll((all) => all.map((e) => e.outerHTML)) };
  },
  async screenshot({ name, path }) {
    await rec(name).page.screenshot({ path, fullPage: true, timeout: MAX_WAIT_MS });
    return { path };
  },
  async close_page({ name }) {
    await rec(name).context.close();
    pages.delete(name);
    return {};
  },
  async quit() {
    if (browser) await browser.close();
    browser = null;
    return {};
  },
};

function reply(obj) {
  process.stdout.write('@@rpc ' + JSON.stringify(obj) + '\n');
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();   // one request at a time, in order
rl.on('line', (line) => {
  queue = queue.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
      const fn = handlers[req.cmd];
      if (!fn) throw new Error(`unknown command ${req.cmd}`);
      reply({ id: req.id, ok: true, ...(await fn(req)) });
    } catch (e) {
      reply({ id: req && req.id, ok: false, error: String(e && e.message || e) });
    }
    if (req && req.cmd === 'quit') process.exit(0);
  });
});
// stdin closed (pytest went away): close the browser, then leave.
rl.on('close', () => {
  queue.then(async () => {
    if (browser) await browser.close().catch(() => {});
    process.exit(0);
  });
});
