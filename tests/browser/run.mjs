#!/usr/bin/env node
// Drives the plex-oidc sign-in page in real headless Chromium. The Rust integration tests start
// the server (pointed at the fake plex.tv) and spawn this script once per scenario; it prints ONE
// JSON line ({"ok":true,...} or {"ok":false,"error":...}) and exits 0 on success, 1 on failure,
// 2 on bad arguments. Run `node run.mjs --help` for the options.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

const USAGE = `usage: node run.mjs --scenario NAME --authorize-url URL [options]

scenarios:
  popup-approve       desktop; Sign in opens the Plex popup, approve as owner, back at the app with a code
  popup-early-click   like popup-approve, but clicks before /login/start answered (popup-wait page first)
  redirect-approve    phone (375x667, touch); auto mode redirects the whole page to Plex and back
  popup-blocked       desktop; window.open returns null, so the page falls back to the redirect
  denied              desktop popup; approve as outsider; the denied state names the account; with
                      --expect-redirect-prefix also "Use another Plex account", approve as owner, back
  denied-redirect     phone redirect; approve as outsider; the server renders the denied state
  reach-state         waits for --expect-state (clicking Sign in, and --approve ACCOUNT if given)
  states              every state on desktop and phone, light and dark: screenshots + axe check
  inspect             loads the page and prints what it shows (text, colours) for theme tests
  preview             every state from \`plex-oidc preview\` (--preview-url instead of --authorize-url)

options:
  --expect-redirect-prefix URL  the app's redirect_uri (approve scenarios); the navigation there is
                                watched, so nothing needs to listen on it
  --screenshots DIR             save PNGs there (always in "states"; on failure in the others)
  --expect-account NAME         denied scenarios: the account name the page must show
  --expect-state STATE          reach-state: the data-state to wait for
  --approve ACCOUNT             reach-state: owner|friend|home|managed|outsider, clicked in the fake
  --preview-url URL             preview: a URL with {state} in it, e.g. http://127.0.0.1:8080/{state}
  --locale TAG                  browser language, default en-US (sent as Accept-Language)
  --chromium PATH               default $CHROMIUM_PATH or /usr/bin/chromium
  --timeout-ms N                per step, default 15000`;

const ACCOUNTS = ['owner', 'friend', 'home', 'managed', 'outsider'];
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = { viewport: { width: 375, height: 667 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

function parse(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      'authorize-url': { type: 'string' },
      'expect-redirect-prefix': { type: 'string' },
      screenshots: { type: 'string' },
      'expect-account': { type: 'string' },
      'expect-state': { type: 'string' },
      'preview-url': { type: 'string' },
      approve: { type: 'string' },
      locale: { type: 'string', default: 'en-US' },
      chromium: { type: 'string', default: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
      'timeout-ms': { type: 'string', default: '15000' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const need = (name) => {
    if (!values[name]) throw new UsageError(`--${name} is required for --scenario ${values.scenario}`);
    return values[name];
  };
  if (!SCENARIOS[values.scenario]) throw new UsageError(`unknown --scenario ${values.scenario ?? '(none)'}`);
  const preview = values.scenario === 'preview';
  const opts = {
    scenario: values.scenario,
    authorizeUrl: new URL(need(preview ? 'preview-url' : 'authorize-url').replace('{state}', 'ready')),
    previewUrl: preview ? need('preview-url') : undefined,
    screenshots: values.screenshots,
    expectAccount: values['expect-account'],
    locale: values.locale,
    chromium: values.chromium,
    timeout: Number(values['timeout-ms']),
  };
  if (['popup-approve', 'popup-early-click', 'redirect-approve', 'popup-blocked'].includes(opts.scenario)) {
    opts.redirectPrefix = need('expect-redirect-prefix');
  } else if (opts.scenario === 'denied') {
    opts.redirectPrefix = values['expect-redirect-prefix'];
  }
  if (opts.scenario === 'states') opts.screenshots = need('screenshots');
  if (preview && !opts.previewUrl.includes('{state}')) throw new UsageError('--preview-url needs a {state} placeholder');
  if (opts.scenario === 'reach-state') {
    opts.expectState = need('expect-state');
    opts.approve = values.approve;
    if (opts.approve && !ACCOUNTS.includes(opts.approve)) throw new UsageError(`unknown --approve ${opts.approve}`);
  }
  if (!Number.isFinite(opts.timeout) || opts.timeout <= 0) throw new UsageError('--timeout-ms must be a positive number');
  return opts;
}

class UsageError extends Error {}

function isApi(url) {
  try {
    const { pathname } = new URL(url);
    return pathname.endsWith('/login/start') || pathname.endsWith('/login/poll');
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// One run: a browser, its contexts, and everything that counts as a page error on our origin.

class Run {
  constructor(opts) {
    this.opts = opts;
    this.origin = opts.authorizeUrl.origin;
    this.consoleErrors = [];
    this.cspViolations = [];
    this.screenshots = [];
    this.callbacks = [];
    this.result = {};
  }

  async launch() {
    this.browser = await chromium.launch({
      executablePath: this.opts.chromium,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }

  async context(device, extra = {}) {
    const context = await this.browser.newContext({ ...device, locale: this.opts.locale, ...extra });
    context.setDefaultTimeout(this.opts.timeout);
    // Runs before any page script, outside CSP (it is injected by the browser, not the page).
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
      });
    });
    context.on('page', (page) => this.watch(page));
    if (this.opts.redirectPrefix) {
      // The app's callback is seen as a navigation request: it usually arrives as the target of a
      // 303, which request interception cannot answer, so nothing needs to listen there.
      const prefix = this.opts.redirectPrefix;
      context.on('request', (request) => {
        if (request.isNavigationRequest() && request.url().startsWith(prefix)) {
          this.callbacks.push({ url: request.url(), at: Date.now() });
        }
      });
    }
    return context;
  }

  ours(page) {
    try {
      return new URL(page.url()).origin === this.origin;
    } catch {
      return false;
    }
  }

  watch(page) {
    page.on('console', (msg) => {
      if (msg.type() !== 'error' || !this.ours(page)) return;
      // Chromium logs every non-2xx response; error pages and the page API answer that way by
      // design, so only other resources (assets) count.
      const resource = msg.location().url;
      if (msg.text().startsWith('Failed to load resource') && (isApi(resource) || resource === page.url())) return;
      const text = `${new URL(page.url()).pathname}: ${msg.text()}`;
      (msg.text().startsWith('CSP violation') || /Content Security Policy/i.test(msg.text()) ? this.cspViolations : this.consoleErrors).push(text);
    });
    page.on('pageerror', (error) => {
      if (this.ours(page)) this.consoleErrors.push(`${new URL(page.url()).pathname}: uncaught ${error.message}`);
    });
  }

  async shot(page, name) {
    if (!this.opts.screenshots) return;
    fs.mkdirSync(this.opts.screenshots, { recursive: true });
    const file = path.join(this.opts.screenshots, `${name}.png`);
    // Keeps hover styles out of the picture.
    await page.mouse.move(0, 0);
    await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
    this.screenshots.push(file);
  }

  async close() {
    if (this.browser) await this.browser.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Page helpers

const stateOf = (page) => page.evaluate(() => document.body.dataset.state);

async function waitForState(page, state, timeout) {
  try {
    await page.waitForFunction((s) => document.body && document.body.dataset.state === s, state, { timeout });
  } catch {
    throw new Error(`page never reached state "${state}" (it shows "${await stateOf(page).catch(() => '?')}" at ${page.url()})`);
  }
}

async function waitReady(page) {
  await waitForState(page, 'ready');
  await page.waitForFunction(() => !('busy' in document.body.dataset));
}

// The heading of the shown state must be visible and (after a change of state) focused.
async function checkHeading(page, state, { focused }) {
  const heading = page.locator(`#h-${state}`);
  if (!(await heading.isVisible())) throw new Error(`heading of state "${state}" is not visible`);
  const text = (await heading.innerText()).trim();
  if (!text) throw new Error(`heading of state "${state}" is empty`);
  if (focused) {
    const active = await page.evaluate(() => document.activeElement && document.activeElement.id);
    if (active !== `h-${state}`) throw new Error(`focus is on "${active}", not on the heading of "${state}"`);
  }
  return text;
}

async function approveIn(page, account) {
  const button = page.locator(`#approve-${account}`);
  await button.waitFor({ state: 'visible' });
  const startedAt = Date.now();
  await button.click();
  return startedAt;
}

function checkCallback(run, url) {
  const u = new URL(url);
  if (!url.startsWith(run.opts.redirectPrefix)) throw new Error(`ended at ${url}, not under ${run.opts.redirectPrefix}`);
  if (!u.searchParams.get('code')) throw new Error(`no code= in ${url}`);
  const state = run.opts.authorizeUrl.searchParams.get('state');
  if (state !== null && u.searchParams.get('state') !== state) throw new Error(`state not echoed in ${url}`);
  return url;
}

// Resolves to {url, at} of the first navigation to the app's redirect URI.
async function waitForCallback(run) {
  const deadline = Date.now() + run.opts.timeout;
  while (!run.callbacks.length) {
    if (Date.now() > deadline) throw new Error(`never sent back to ${run.opts.redirectPrefix}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const [callback] = run.callbacks;
  checkCallback(run, callback.url);
  return callback;
}

let axeSource;
async function axeCheck(page) {
  axeSource ??= fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  // Evaluated over the DevTools protocol, so the page's CSP does not apply to it.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ['violations'], runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }),
  );
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async function popupApprove(run, { early = false } = {}) {
  const context = await run.context(DESKTOP);
  const page = await context.newPage();
  if (early) {
    // Hold /login/start back so the click lands before the Plex URL is known.
    await page.route('**/login/start', async (route) => {
      await new Promise((r) => setTimeout(r, 1500));
      await route.continue();
    });
  }
  await page.goto(run.opts.authorizeUrl.href);
  if (early) await waitForState(page, 'ready');
  else await waitReady(page);
  const [popup] = await Promise.all([context.waitForEvent('page'), page.click('#signin')]);
  if (early) {
    await popup.waitForURL((u) => u.pathname === '/login/popup-wait', { timeout: run.opts.timeout });
    run.result.popup_wait_shown = true;
  }
  await waitForState(page, 'waiting');
  await checkHeading(page, 'waiting', { focused: true });
  const approvedAt = await approveIn(popup, 'owner');
  const callback = await waitForCallback(run);
  run.result.approve_to_redirect_ms = callback.at - approvedAt;
  run.result.final_url = callback.url;
  // popup-done closes itself where the browser lets it; either way it must have landed there.
  run.result.popup_closed =
    popup.isClosed() ||
    (await popup
      .waitForEvent('close', { timeout: 2000 })
      .then(() => true)
      .catch(() => false));
  if (!run.result.popup_closed && !popup.url().includes('/login/popup-done')) {
    throw new Error(`popup neither closed nor on /login/popup-done: ${popup.url()}`);
  }
  run.result.pages_opened = context.pages().length;
}

async function redirectApprove(run, { blocked = false, device = PHONE, account = 'owner' } = {}) {
  const context = await run.context(device);
  let popups = 0;
  context.on('page', () => popups++);
  const page = await context.newPage();
  popups = 0;
  if (blocked) {
    await page.addInitScript(() => {
      window.open = () => null;
    });
  }
  await page.goto(run.opts.authorizeUrl.href);
  await waitReady(page);
  if (device.hasTouch) await page.tap('#signin');
  else await page.click('#signin');
  // The whole page goes to Plex: the approve buttons appear in this same page.
  const approvedAt = await approveIn(page, account);
  if (popups !== 0) throw new Error(`${popups} popup(s) opened in redirect mode`);
  run.result.approved_at = approvedAt;
  return page;
}

async function redirectFlow(run, opts) {
  await redirectApprove(run, opts);
  const callback = await waitForCallback(run);
  run.result.final_url = callback.url;
  run.result.approve_to_redirect_ms = callback.at - run.result.approved_at;
  delete run.result.approved_at;
}

async function expectDenied(run, page, { focused }) {
  await waitForState(page, 'denied');
  run.result.heading = await checkHeading(page, 'denied', { focused });
  const account = (await page.locator('#account').innerText()).trim();
  if (!account) throw new Error('denied state does not name the account');
  if (!(await page.locator('#account').isVisible())) throw new Error('account name is not visible');
  if (run.opts.expectAccount && account !== run.opts.expectAccount) {
    throw new Error(`denied state names "${account}", expected "${run.opts.expectAccount}"`);
  }
  if (!(await page.locator('[data-for="denied"] [data-action="restart"]').isVisible())) {
    throw new Error('no "use another Plex account" button');
  }
  run.result.account = account;
  await run.shot(page, `${run.opts.scenario}`);
}

async function denied(run) {
  const context = await run.context(DESKTOP);
  const page = await context.newPage();
  await page.goto(run.opts.authorizeUrl.href);
  await waitReady(page);
  const [popup] = await Promise.all([context.waitForEvent('page'), page.click('#signin')]);
  await approveIn(popup, 'outsider');
  await expectDenied(run, page, { focused: true });
  if (!run.opts.redirectPrefix) return;
  // "Use another Plex account": a fresh Plex PIN for the same pending login, then the owner gets in.
  await page.click('[data-for="denied"] [data-action="restart"]');
  await waitReady(page);
  await checkHeading(page, 'ready', { focused: true });
  const [second] = await Promise.all([context.waitForEvent('page'), page.click('#signin')]);
  await approveIn(second, 'owner');
  run.result.final_url = (await waitForCallback(run)).url;
}

async function deniedRedirect(run) {
  const page = await redirectApprove(run, { account: 'outsider' });
  // Rendered by the server at /login/continue (possibly after "checking"); focus stays put on load.
  delete run.result.approved_at;
  await expectDenied(run, page, { focused: false });
  run.result.final_url = page.url();
}

async function reachState(run) {
  const { expectState, approve } = run.opts;
  const context = await run.context(DESKTOP);
  const page = await context.newPage();
  await page.goto(run.opts.authorizeUrl.href);
  const deadline = Date.now() + run.opts.timeout;
  let popup = null;
  for (;;) {
    const { state, busy } = await page.evaluate(() => ({ state: document.body.dataset.state, busy: 'busy' in document.body.dataset }));
    if (state === expectState) break;
    if (state === 'ready' && !busy && !popup) {
      [popup] = await Promise.all([context.waitForEvent('page'), page.click('#signin')]);
      if (approve) await approveIn(popup, approve);
    }
    if (Date.now() > deadline) throw new Error(`page never reached state "${expectState}" (it shows "${state}")`);
    await page.waitForTimeout(100);
  }
  run.result.heading = await checkHeading(page, expectState, { focused: false });
  run.result.text = (await page.locator(`[data-for="${expectState}"]`).innerText()).trim();
  const violations = await axeCheck(page);
  if (violations.length) throw new Error(`accessibility: ${violations.join('; ')}`);
  await run.shot(page, `${expectState}`);
}

// Every state, reached through the real page script. The server renders ready and invalid;
// the others come from /login/poll answers stubbed here (the real flow is covered by the
// scenarios above), so each can be held still for its screenshot.
const STUBBED = {
  waiting: { status: 200, body: { state: 'waiting', retry_after_ms: 1000 } },
  'waiting-reconnecting': { abort: true },
  checking: { status: 200, body: { state: 'checking', retry_after_ms: 1000 } },
  redirecting: { status: 200, body: { state: 'approved', continue_url: '/login/continue?login=held-for-screenshot' } },
  denied: { status: 200, body: { state: 'denied', account: 'mallory' } },
  unavailable: { status: 503, body: { state: 'unavailable', message: 'plex.tv did not answer' } },
  expired: { status: 410, body: { state: 'expired', message: 'the sign-in expired' } },
};

async function showState(run, context, name) {
  const page = await context.newPage();
  if (name === 'invalid') {
    const bad = new URL(run.opts.authorizeUrl);
    bad.searchParams.set('client_id', 'no-such-client');
    await page.goto(bad.href);
    await waitForState(page, 'invalid');
    const detail = (await page.locator('#detail').innerText()).trim();
    if (!detail) throw new Error('invalid state shows no detail for the operator');
    return { page, state: 'invalid' };
  }
  if (name === 'popup-wait' || name === 'popup-done') {
    // A first entry in the history keeps popup-done from closing this (not script-opened) tab.
    await page.goto(run.opts.authorizeUrl.href);
    // Relative to the authorize endpoint, so a service under a path prefix works too.
    await page.goto(new URL(`login/${name}`, run.opts.authorizeUrl).href);
    return { page, state: null };
  }
  await page.goto(run.opts.authorizeUrl.href);
  await waitReady(page);
  if (name === 'ready') return { page, state: 'ready' };
  const stub = STUBBED[name];
  await page.route('**/login/poll', (route) =>
    stub.abort ? route.abort('connectionrefused') : route.fulfill({ status: stub.status, contentType: 'application/json', body: JSON.stringify(stub.body) }),
  );
  // A 204 answer cancels the navigation back to the app, so "redirecting" stays on screen.
  await page.route('**/login/continue*', (route) => route.fulfill({ status: 204 }));
  // A stand-in window: the point here is this page, not Plex.
  await page.evaluate(() => {
    window.open = () => ({ location: {}, close() {}, focus() {} });
  });
  await page.click('#signin');
  const state = name === 'waiting-reconnecting' ? 'waiting' : name === 'redirecting' ? 'redirecting' : STUBBED[name].body.state;
  await waitForState(page, state);
  if (name === 'waiting-reconnecting') await page.locator('#note').filter({ hasText: /\S/ }).waitFor();
  return { page, state };
}

async function states(run) {
  const names = ['ready', 'waiting', 'waiting-reconnecting', 'checking', 'redirecting', 'denied', 'unavailable', 'expired', 'invalid', 'popup-wait', 'popup-done'];
  const a11y = [];
  run.result.states = {};
  // Phones here get no touch emulation, so "auto" mode takes the popup path the stubs rely on.
  for (const [label, device] of [['desktop', DESKTOP], ['phone', { viewport: PHONE.viewport, deviceScaleFactor: 2 }]]) {
    const context = await run.context(device);
    for (const name of names) {
      const { page, state } = await showState(run, context, name);
      if (state) run.result.states[name] = await checkHeading(page, state, { focused: false });
      for (const scheme of ['light', 'dark']) {
        await page.emulateMedia({ colorScheme: scheme });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
        if (overflow) throw new Error(`${name} scrolls sideways on ${label}`);
        await run.shot(page, `${name}-${label}-${scheme}`);
        for (const v of await axeCheck(page)) a11y.push(`${name} ${label} ${scheme}: ${v}`);
      }
      await page.close();
    }
    await context.close();
  }
  // The narrowest phones still in use.
  const narrow = await run.context({ viewport: { width: 320, height: 568 } });
  const page = await narrow.newPage();
  await page.goto(run.opts.authorizeUrl.href);
  await waitReady(page);
  if (await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth)) throw new Error('ready scrolls sideways at 320 px');
  await run.shot(page, 'ready-320-light');
  await page.emulateMedia({ reducedMotion: 'reduce' });
  await page.evaluate(() => document.body.setAttribute('data-busy', ''));
  const animation = await page.evaluate(() => getComputedStyle(document.querySelector('.spinner')).animationName);
  if (animation === 'spin') throw new Error('spinners still spin with prefers-reduced-motion: reduce');
  if (a11y.length) throw new Error(`accessibility: ${a11y.join('; ')}`);
}

async function inspect(run) {
  const context = await run.context(DESKTOP);
  const page = await context.newPage();
  const response = await page.goto(run.opts.authorizeUrl.href);
  await page.waitForFunction(() => document.body && !('busy' in document.body.dataset)).catch(() => {});
  Object.assign(run.result, {
    status: response && response.status(),
    csp: response && (await response.headerValue('content-security-policy')),
    ...(await page.evaluate(() => {
      const style = (sel, prop) => {
        const el = document.querySelector(sel);
        return el ? getComputedStyle(el).getPropertyValue(prop) : null;
      };
      return {
        state: document.body.dataset.state,
        lang: document.documentElement.lang,
        title: document.title,
        heading: (document.querySelector(`#h-${document.body.dataset.state}`) || document.querySelector('h1'))?.innerText.trim() ?? null,
        text: document.body.innerText.trim().slice(0, 4000),
        body_background: style('body', 'background-color'),
        card_background: style('.card', 'background-color'),
        button_background: style('#signin', 'background-color'),
        button_color: style('#signin', 'color'),
        logo_visible: !!document.querySelector('.logo') && getComputedStyle(document.querySelector('.logo')).display !== 'none',
      };
    })),
  });
  await run.shot(page, 'inspect');
}

// The pages of `plex-oidc preview`: sample data, no pending login, so the script stays still.
async function preview(run) {
  const names = ['ready', 'waiting', 'checking', 'redirecting', 'denied', 'unavailable', 'expired', 'invalid'];
  const a11y = [];
  run.result.states = {};
  for (const [label, device] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    const context = await run.context(device);
    const page = await context.newPage();
    for (const name of names) {
      await page.goto(run.opts.previewUrl.replace('{state}', encodeURIComponent(name)));
      await waitForState(page, name);
      run.result.states[name] = await checkHeading(page, name, { focused: false });
      await run.shot(page, `preview-${name}-${label}`);
      for (const v of await axeCheck(page)) a11y.push(`${name} ${label}: ${v}`);
    }
    await context.close();
  }
  if (a11y.length) throw new Error(`accessibility: ${a11y.join('; ')}`);
}

const SCENARIOS = {
  'popup-approve': (run) => popupApprove(run),
  'popup-early-click': (run) => popupApprove(run, { early: true }),
  'redirect-approve': (run) => redirectFlow(run, {}),
  'popup-blocked': async (run) => {
    await redirectFlow(run, { blocked: true, device: DESKTOP });
  },
  denied,
  'denied-redirect': deniedRedirect,
  'reach-state': reachState,
  states,
  inspect,
  preview,
};

// ---------------------------------------------------------------------------------------------

async function main() {
  let opts;
  try {
    opts = parse(process.argv.slice(2));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, error: `usage: ${error.message}` }));
    console.error(USAGE);
    return 2;
  }
  const run = new Run(opts);
  const startedAt = Date.now();
  let error = null;
  try {
    await run.launch();
    await SCENARIOS[opts.scenario](run);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
    for (const context of run.browser ? run.browser.contexts() : []) {
      for (const [i, page] of context.pages().entries()) {
        await run.shot(page, `failure-${opts.scenario}-${i}`).catch(() => {});
      }
    }
  } finally {
    await run.close();
  }
  if (!error && run.cspViolations.length) error = `CSP violations: ${run.cspViolations.join('; ')}`;
  if (!error && run.consoleErrors.length) error = `console errors: ${run.consoleErrors.join('; ')}`;
  const out = {
    ok: !error,
    scenario: opts.scenario,
    ...(error ? { error } : {}),
    ...run.result,
    elapsed_ms: Date.now() - startedAt,
    screenshots: run.screenshots,
    csp_violations: run.cspViolations,
    console_errors: run.consoleErrors,
  };
  console.log(JSON.stringify(out));
  return error ? 1 : 0;
}

process.exitCode = await main();
