// Drives Debian's chromium through playwright-core for velib-web's browser test
// (tests/browser.rs). The Rust test owns the broker and the server; this script owns the
// browser. It reads one JSON command per line on stdin and answers each with one JSON line on
// stdout, so the test can produce a record between two steps and time what the page does.
//
// Every request the page makes to anywhere but the server is aborted and reported: the page
// must work with tiles blocked, and must load nothing else from outside.
'use strict';

const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const CHROMIUM = process.env.VELIB_CHROMIUM || '/usr/bin/chromium';
const PROFILE = process.env.VELIB_PROFILE_DIR;
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let context;
let page;
let origin;
const blocked = [];
const errors = [];

function reply(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

// Waits for `predicate(arg)` in the page, returning how long it took (ms) or the error.
async function waitIn(predicate, arg, timeout) {
  const start = Date.now();
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 'raf' });
    return { ok: true, ms: Date.now() - start };
  } catch (e) {
    return { ok: false, ms: Date.now() - start, error: String(e.message || e).split('\n')[0] };
  }
}

const circles = () => document.querySelectorAll('path.station').length;

const commands = {
  async launch() {
    context = await chromium.launchPersistentContext(PROFILE, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1280, height: 800 },
    });
    page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (origin && url.startsWith(origin)) return route.continue();
      blocked.push(url);
      return route.abort('blockedbyclient');
    });
    return { ok: true, version: context.browser() ? context.browser().version() : 'persistent' };
  },

  // Opens the page and waits for `expect` circles; `ms` is from navigation to that.
  async open({ url, expect, timeout }) {
    origin = new URL(url).origin;
    const start = Date.now();
    await page.goto(url);
    const waited = await waitIn((n) => document.querySelectorAll('path.station').length === n, expect, timeout);
    // One more frame, so what was counted has been painted.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    return {
      ...waited,
      ms: Date.now() - start,
      circles: await page.evaluate(circles),
      offmap: await page.textContent('#offmap'),
      offmap_hidden: await page.$eval('#offmap', (e) => e.hidden),
      connection: await page.textContent('#connection'),
    };
  },

  // Waits (up to `timeout` ms) for the circle of `key` to show `bikes` and for a feed line
  // reading `feed`.
  async change({ key, bikes, feed, timeout }) {
    return waitIn(
      ({ key, bikes, feed }) => {
        const circle = Array.from(document.querySelectorAll('path.station')).find((c) => c.dataset.key === key);
        const line = Array.from(document.querySelectorAll('#feed li .text')).some((s) => s.textContent === feed);
        return circle && circle.dataset.bikes === String(bikes) && line;
      },
      { key, bikes, feed },
      timeout,
    );
  },

  // Waits for every circle of `expected` ([key, bikes] pairs) to show its count; `ms` is from
  // this command's arrival, so the test sends it before producing the records.
  async changes({ expected, timeout }) {
    return waitIn(
      (expected) => {
        const bikes = new Map();
        for (const c of document.querySelectorAll('path.station')) bikes.set(c.dataset.key, c.dataset.bikes);
        return expected.every(([key, n]) => bikes.get(key) === String(n));
      },
      expected,
      timeout,
    );
  },

  // Waits for the connection indicator to read `state` (live, reconnecting).
  async connection({ state, timeout }) {
    return waitIn((state) => document.getElementById('connection').dataset.state === state, state, timeout);
  },

  async circle({ key }) {
    return page.evaluate((key) => {
      const c = Array.from(document.querySelectorAll('path.station')).find((c) => c.dataset.key === key);
      return c ? { ...c.dataset, fill: c.getAttribute('fill') } : null;
    }, key);
  },

  // Turns the "colour by e-bikes" switch on or off, and waits for the page to take it.
  async colour({ ebikes, timeout }) {
    await page.setChecked('#by-ebikes', ebikes);
    return waitIn((want) => document.body.dataset.colour === want, ebikes ? 'ebikes' : 'bikes', timeout);
  },

  // The totals table: its header and one row of cells per contract.
  async totals() {
    const head = await page.$$eval('#totals th', (ths) => ths.map((t) => t.textContent));
    const rows = await page.$$eval('#totals tbody tr', (trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent)),
    );
    return { ok: true, head, rows };
  },

  // Waits for a feed line reading `text`.
  async feed({ text, timeout }) {
    return waitIn(
      (text) => Array.from(document.querySelectorAll('#feed li .text')).some((s) => s.textContent === text),
      text,
      timeout,
    );
  },

  // Chooses a contract ('' for all); answers with the circles then on the map, by contract.
  async filter({ contract, timeout }) {
    await page.selectOption('#contract', contract);
    const options = await page.$$eval('#contract option', (os) => os.map((o) => o.value));
    const waited = await waitIn(
      (contract) => Array.from(document.querySelectorAll('path.station')).every((c) => !contract || c.dataset.contract === contract),
      contract,
      timeout,
    );
    const byContract = await page.evaluate(() => {
      const out = {};
      for (const c of document.querySelectorAll('path.station')) out[c.dataset.contract] = (out[c.dataset.contract] || 0) + 1;
      return out;
    });
    const feed = await page.$$eval('#feed li', (ls) => ls.filter((l) => !l.hidden).map((l) => l.dataset.contract));
    return { ...waited, options, byContract, feed };
  },

  // Opens the popup of `key` with a click on its circle; answers with what it shows.
  async popup({ key, timeout }) {
    const handle = await page.evaluateHandle(
      (key) => Array.from(document.querySelectorAll('path.station')).find((c) => c.dataset.key === key),
      key,
    );
    const circle = handle.asElement();
    if (!circle) return { ok: false, error: `no circle for ${key}` };
    // Dispatched on the circle itself: a click at its position could land on a neighbour
    // drawn over it.
    await circle.dispatchEvent('click');
    // Clicking another circle replaces an open popup: wait for this station's.
    await page.waitForFunction(
      (key) => Array.from(document.querySelectorAll('.leaflet-popup .popup')).some((p) => p.dataset.key === key),
      key,
      { timeout },
    );
    return page.evaluate((key) => {
      const p = Array.from(document.querySelectorAll('.leaflet-popup .popup')).find((p) => p.dataset.key === key);
      const feedText = Array.from(document.querySelectorAll('#feed li .text')).map((s) => s.textContent);
      return {
        ok: true,
        key: p.dataset.key,
        name: p.querySelector('.name').textContent,
        address: p.querySelector('.address').textContent,
        terms: Array.from(p.querySelectorAll('dt')).map((d) => d.textContent),
        values: Array.from(p.querySelectorAll('dd')).map((d) => d.textContent),
        sparkline: Boolean(p.querySelector('svg polyline')),
        badge: (p.querySelector('.badge') || {}).textContent || null,
        // Elements that only exist if station text was parsed as HTML.
        injected: document.querySelectorAll('.leaflet-popup img, .leaflet-popup script, #feed img, #feed script, #totals img, #contract img').length,
        xss: window.__xss || null,
        feed: feedText,
        contracts: Array.from(document.querySelectorAll('#contract option')).map((o) => o.textContent),
      };
    }, key);
  },

  // Waits for the open popup of `key` to draw its hourly history; answers with what it shows.
  async history({ key, timeout }) {
    const waited = await waitIn(
      (key) => {
        const p = Array.from(document.querySelectorAll('.leaflet-popup .popup')).find((p) => p.dataset.key === key);
        return p && p.querySelector('.history').childElementCount > 0;
      },
      key,
      timeout,
    );
    if (!waited.ok) return waited;
    return page.evaluate((key) => {
      const p = Array.from(document.querySelectorAll('.leaflet-popup .popup')).find((p) => p.dataset.key === key);
      const text = (selector) => (p.querySelector(selector) || {}).textContent || null;
      return {
        ok: true,
        windows: Number(p.querySelector('.history').dataset.windows || 0),
        series: Array.from(p.querySelectorAll('.daychart polyline')).map((l) => l.dataset.series),
        activity: text('.activity'),
        badge: text('.badge.locked'),
      };
    }, key);
  },

  // Sets the "locked stations only" filter; answers with the keys of the circles shown.
  async lockedOnly({ checked, expect, timeout }) {
    await page.setChecked('#locked-only', checked);
    const waited = await waitIn((n) => document.querySelectorAll('path.station').length === n, expect, timeout);
    const keys = await page.$$eval('path.station', (cs) => cs.map((c) => c.dataset.key));
    return { ...waited, keys };
  },

  async screenshot({ file }) {
    // Transitions finished (the popup fades in), so the picture shows the settled page.
    await page.screenshot({ path: file, animations: 'disabled' });
    return { ok: true };
  },

  // What the page has seen: request failures other than the blocked ones show up as errors.
  async report() {
    return { ok: true, blocked: blocked.slice(), errors: errors.slice() };
  },

  async close() {
    await context.close();
    return { ok: true };
  },
};

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    try {
      const handler = commands[command.cmd];
      if (!handler) throw new Error(`unknown command ${command.cmd}`);
      reply(await handler(command));
    } catch (e) {
      reply({ ok: false, error: String((e && e.stack) || e) });
    }
    if (command.cmd === 'close') break;
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(String((e && e.stack) || e) + '\n');
    process.exit(1);
  },
);
