// A visitor's view: Debian's headless Chromium, driven by playwright-core, opens the page of
// each edition, reads the visible fields, reloads, and keeps a screenshot in artifacts/.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const artifacts = join(here, 'artifacts');
mkdirSync(artifacts, { recursive: true });
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const settings = { author: 'Grace Hopper', version: 'v3', hostname: 'browser-test-host' };

function startApp(edition) {
  const state = mkdtempSync(join(tmpdir(), `visits-${edition}-`));
  let child;
  if (edition === 'wasm') {
    const args = ['up', '--listen', '127.0.0.1:0', '-f', join(root, 'spin.toml'), '--state-dir', state,
      '--cache-dir', join(root, 'target', 'e2e-cache')];
    for (const [k, v] of Object.entries(settings)) args.push('--variable', `${k}=${v}`);
    child = spawn(join(root, 'target', 'release', 'visits-runner'), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } else {
    const env = { ...process.env, LISTEN_ADDRESS: '127.0.0.1:0' };
    for (const [k, v] of Object.entries(settings)) env[k.toUpperCase()] = v;
    child = spawn(join(root, 'target', 'release', 'visits-native'), [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  let log = '';
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${edition} did not start:\n${log}`)), 120_000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => reject(new Error(`${edition} exited with ${code}:\n${log}`)));
    child.on('error', reject);
  });
  return { child, url, stop: () => { child.kill('SIGTERM'); rmSync(state, { recursive: true, force: true }); } };
}

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
after(() => browser.close());

for (const edition of ['wasm', 'native']) {
  test(`a visitor sees every field on the ${edition} edition`, async () => {
    const app = startApp(edition);
    try {
      const url = await app.url;
      const page = await browser.newPage({ userDataDir: undefined });
      const response = await page.goto(url + '/');
      assert.equal(response.status(), 200);
      assert.equal(await page.title(), 'wasm-visits v3');
      assert.equal(await page.locator('#project').innerText(), 'wasm-visits');
      assert.equal(await page.locator('#author').innerText(), 'Grace Hopper');
      assert.equal(await page.locator('#version').innerText(), 'v3');
      assert.equal(await page.locator('#hostname').innerText(), 'browser-test-host');
      const shown = await page.locator('#date').getAttribute('datetime');
      assert.ok(Math.abs(Date.parse(shown) - Date.now()) < 60_000, `date ${shown} is now`);
      assert.match(await page.locator('#date').innerText(), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/);
      assert.equal(await page.locator('#visits').innerText(), '1');
      await page.reload();
      assert.equal(await page.locator('#visits').innerText(), '2');
      const rows = page.locator('#records tbody tr');
      assert.equal(await rows.count(), 2);
      assert.equal(await rows.first().locator('td.ip').innerText(), '127.0.0.1');
      assert.ok(await page.locator('#records').isVisible());
      await page.screenshot({ path: join(artifacts, `page-${edition}.png`), fullPage: true });
      await page.close();
    } finally {
      app.stop();
    }
  });
}
