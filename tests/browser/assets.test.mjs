// Static checks of assets/ that need no browser: the template contract with the server, the
// strings of every language, and the CSP rules (no inline script or style). `npm test` runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ASSETS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../assets');
const read = (rel) => fs.readFileSync(path.join(ASSETS, rel), 'utf8');
const PAGES = ['login.html', 'popup-wait.html', 'popup-done.html'];
// The variables the server fills in; restart_url is optional (an unknown variable renders empty).
const VARIABLES = ['lang', 'title', 'product', 'server_name', 'client_name', 'state', 'login_id', 'login_mode', 'account', 'detail', 'request_id', 'logo_url', 'restart_url'];
const languages = fs.readdirSync(path.join(ASSETS, 'i18n')).filter((f) => f.endsWith('.json'));
const strings = Object.fromEntries(languages.map((f) => [f, JSON.parse(read(`i18n/${f}`))]));
const placeholders = (text) => [...text.matchAll(/\{\{([^}]*)\}\}/g)].map((m) => m[1]);

test('English and at least one other language are shipped', () => {
  assert.ok(languages.includes('en.json'));
  assert.ok(languages.length >= 2, `only ${languages.join(', ')}`);
});

test('every language has exactly the keys of English, none of them empty', () => {
  const english = Object.keys(strings['en.json']).sort();
  for (const [file, table] of Object.entries(strings)) {
    assert.deepEqual(Object.keys(table).sort(), english, `${file} keys differ from en.json`);
    for (const [key, value] of Object.entries(table)) {
      assert.equal(typeof value, 'string', `${file}: ${key}`);
      assert.notEqual(value.trim(), '', `${file}: ${key} is empty`);
    }
  }
});

test('strings use only variables the server knows', () => {
  for (const [file, table] of Object.entries(strings)) {
    for (const [key, value] of Object.entries(table)) {
      for (const name of placeholders(value)) {
        assert.ok(VARIABLES.includes(name), `${file}: ${key} uses unknown {{${name}}}`);
      }
    }
  }
});

test('a string keeps the variables of its English original', () => {
  for (const [file, table] of Object.entries(strings)) {
    for (const [key, value] of Object.entries(strings['en.json'])) {
      assert.deepEqual(placeholders(table[key]).sort(), placeholders(value).sort(), `${file}: ${key}`);
    }
  }
});

test('pages use only known variables, existing strings and existing assets', () => {
  for (const page of PAGES) {
    for (const token of placeholders(read(page))) {
      if (token.startsWith('t:')) {
        assert.ok(token.slice(2) in strings['en.json'], `${page}: no string ${token}`);
      } else if (token.startsWith('asset:')) {
        assert.ok(fs.existsSync(path.join(ASSETS, token.slice(6))), `${page}: no asset ${token}`);
      } else {
        assert.ok(VARIABLES.includes(token), `${page}: unknown variable {{${token}}}`);
      }
    }
  }
});

test('every string is used by a page', () => {
  const used = new Set(PAGES.flatMap((page) => placeholders(read(page))).filter((t) => t.startsWith('t:')).map((t) => t.slice(2)));
  for (const key of Object.keys(strings['en.json'])) assert.ok(used.has(key), `string ${key} is never used`);
});

test('pages carry no inline script, inline style or event handler attributes (strict CSP)', () => {
  for (const page of PAGES) {
    const html = read(page);
    assert.doesNotMatch(html, /\sstyle\s*=/i, `${page}: style attribute`);
    assert.doesNotMatch(html, /<style[\s>]/i, `${page}: <style> element`);
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, `${page}: event handler attribute`);
    assert.doesNotMatch(html, /javascript:/i, `${page}: javascript: URL`);
    for (const tag of html.match(/<script\b[^>]*>/gi) ?? []) assert.match(tag, /\ssrc="\{\{asset:/, `${page}: inline ${tag}`);
  }
});

test('pages load nothing from other sites', () => {
  for (const page of PAGES) {
    assert.doesNotMatch(read(page), /(src|href)="(https?:)?\/\//i, `${page}: external reference`);
  }
  for (const css of ['login.css', 'theme.css', 'custom.css']) {
    assert.doesNotMatch(read(css), /@import|url\(/i, `${css}: external reference`);
  }
});

test('theme.css uses only accent and background, each guarded by @supports', () => {
  const css = read('theme.css');
  assert.deepEqual([...new Set(placeholders(css))].sort(), ['accent', 'background']);
  for (const name of ['accent', 'background']) {
    assert.match(css, new RegExp(`@supports \\(color: \\{\\{${name}\\}\\}\\)`), `{{${name}}} without a guard`);
  }
});

test('login.js finds every element and the page offers no action it cannot handle', () => {
  const js = read('login.js');
  const html = read('login.html');
  for (const [, id] of js.matchAll(/getElementById\('([^']+)'\)/g)) {
    assert.match(html, new RegExp(`id="${id}"`), `login.js looks for #${id}`);
  }
  for (const [, action] of html.matchAll(/data-action="([^"]+)"/g)) {
    assert.match(js, new RegExp(`^\\s*'?${action}'?(:|\\()`, 'm'), `no handler for data-action="${action}"`);
  }
  for (const [, state] of html.matchAll(/data-for="([^"]+)"/g)) {
    assert.match(html, new RegExp(`id="h-${state}"`), `state ${state} has no heading to focus`);
    assert.match(read('login.css'), new RegExp(`body\\[data-state="${state}"\\] \\[data-for="${state}"\\]`), `login.css never shows ${state}`);
  }
});

test('popup-done.js broadcasts on the channel login.js listens to', () => {
  const channel = /new BroadcastChannel\('([^']+)'\)/;
  assert.equal(read('popup-done.js').match(channel)[1], read('login.js').match(channel)[1]);
});
