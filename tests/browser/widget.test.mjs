// The web chat widget in a real browser: Debian's Chromium driven by playwright-core against
// the real `sapa` binary (SAPA_BIN) with its own temp data dir and ports. The widget is
// embedded in pages served by a tiny HTTP server on other ports (other origins), with a strict
// Content-Security-Policy. Screenshots go to SCREENSHOT_DIR (default target/browser-screenshots).
//
//   cargo build -p gateway && cd tests/browser && npm ci && SAPA_BIN=../../target/debug/sapa node widget.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { eventually, freePort } from './support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const SAPA_BIN = process.env.SAPA_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR || path.join(repo, 'target', 'browser-screenshots'));
const ANSWER_TIMEOUT = 45_000;

const QUESTION = 'jam buka outlet Blok M hari Minggu?';
const OFFLINE_QUESTION = 'berapa harga kopi susu gula aren?';
const OTHER_DEVICE_QUESTION = 'bisa bayar pakai qris?';
const XSS = '<img src=x onerror=alert(1)>';
const LINK_TEXT = 'tautan https://example.com/zzqx?a=1 qwfp zxcv javascript:alert(1)';

const STREAMED_REPLY = 'Hari Minggu outlet Blok M buka pukul 08.00–23.00 WIB. Sampai jumpa, Kak!';

let tmp;
let sapa;
let sapaPort;
let sapaUrl;
let llmSapa;
let llmSapaUrl;
let fakeLlm;
let allowedSite;
let deniedSite;
let browser;
const dialogs = [];
const pageErrors = [];

function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

/** Starts `sapa serve` (config `<name>.toml`, data dir `<name>-data`) on `port` and resolves
 *  once it listens. */
function startSapa(name = 'sapa', port = sapaPort) {
  return new Promise((resolve, reject) => {
    const logFile = fs.openSync(path.join(tmp, `${name}.log`), 'a');
    fs.mkdirSync(path.join(tmp, `${name}-data`), { recursive: true });
    const child = spawn(
      SAPA_BIN,
      ['--config', path.join(tmp, `${name}.toml`), '--data-dir', path.join(tmp, `${name}-data`), 'serve', '--bind', `127.0.0.1:${port}`],
      {
        cwd: tmp,
        env: { PATH: process.env.PATH, SAPA_TELEMETRY__FILTER: 'warn', RUST_BACKTRACE: '1', SAPA_SERVER__ADMIN_BIND: '127.0.0.1:0' },
        stdio: ['ignore', 'pipe', logFile],
      },
    );
    let out = '';
    const timer = setTimeout(() => reject(new Error(`sapa did not listen within 90 s:\n${out}`)), 90_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('Sapa is listening on')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`sapa exited (${code ?? signal}) before listening:\n${out}\n${tail(`${name}.log`)}`));
    });
  });
}

async function killSapa(signal = 'SIGKILL') {
  if (!sapa || sapa.exitCode !== null || sapa.signalCode !== null) return;
  const exited = new Promise((r) => sapa.once('exit', r));
  sapa.kill(signal);
  await exited;
}

function tail(file) {
  try {
    return fs.readFileSync(path.join(tmp, file), 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '';
  }
}

/** A third-party website embedding the widget with the one-line snippet, under a strict CSP. */
function site(lang) {
  return http.createServer((req, res) => {
    const ws = sapaUrl.replace(/^http/, 'ws');
    if (req.url === '/site.css') {
      // Aggressive page styles that must not leak into the widget.
      res.writeHead(200, { 'content-type': 'text/css' });
      res.end('* { font-family: Georgia, serif !important; } button { background: hotpink !important; color: lime; } body { margin: 0; background: #faf7f2; } main { padding: 40px; max-width: 720px; } h1 { margin: 0; padding: 24px 40px; background: #2d2a26; color: #fff; }');
      return;
    }
    const pageLang = req.url.startsWith('/en') ? 'en' : lang;
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': `default-src 'none'; script-src ${sapaUrl}; style-src 'self' ${sapaUrl}; connect-src ${sapaUrl} ${ws}; img-src 'self'`,
    });
    res.end(`<!doctype html>
<html lang="${pageLang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Toko Kopi Contoh</title><link rel="stylesheet" href="/site.css"></head>
<body><h1>Toko Kopi Contoh</h1>
<main><p>Selamat datang di toko kami. Biji kopi pilihan dari Gayo, Toraja, Kintamani dan Bajawa.</p>
<p>Ada pertanyaan? Klik tombol chat di pojok kanan bawah.</p><button type="button">Tombol halaman</button></main>
<script src="${sapaUrl}/widget.js" data-tenant="demo" async></script>
</body></html>`);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A fake OpenAI-compatible model: waits, then streams a JSON answer citing the passage with
 *  the Sunday hours, a few characters at a time. */
function fakeOpenAi() {
  return http.createServer(async (req, res) => {
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
      res.writeHead(404);
      res.end();
      return;
    }
    let body = '';
    for await (const chunk of req) body += chunk;
    const request = JSON.parse(body);
    const user = request.messages.find((m) => m.role === 'user')?.content ?? '';
    const passages = [];
    for (const line of user.split('\n')) {
      const id = /^\[id: ([^\]]+)\]/.exec(line);
      if (id) passages.push({ id: id[1], text: '' });
      else if (passages.length) passages[passages.length - 1].text += `${line}\n`;
    }
    const cited = passages.find((p) => p.text.includes('08.00–23.00'))?.id ?? 'missing';
    const content = JSON.stringify({ reply: STREAMED_REPLY, action: 'answer', citations: [cited] });
    const usage = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 };
    const base = { id: 'chatcmpl-fake', created: 1_700_000_000, model: 'fake-model' };
    if (!request.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage }));
      return;
    }
    await sleep(1500); // "thinking": the widget shows the typing indicator
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (event) => res.write(`data: ${typeof event === 'string' ? event : JSON.stringify(event)}\n\n`);
    const chars = Array.from(content);
    for (let i = 0; i < chars.length; i += 6) {
      send({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: chars.slice(i, i + 6).join('') }, finish_reason: null }] });
      await sleep(150);
    }
    send({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    send({ ...base, object: 'chat.completion.chunk', choices: [], usage });
    send('[DONE]');
    res.end();
  });
}

async function listen(server) {
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${server.address().port}`;
}

async function newPage(context) {
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.__initialKeys = Object.keys(window);
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  return page;
}

const w = (page, selector) => page.locator(selector);
const botWith = (page, text) => page.locator('li.msg.bot .bubble', { hasText: text }).first();
const customerWith = (page, text) => page.locator('li.msg.customer .bubble', { hasText: text });

async function sendMessage(page, text) {
  const input = w(page, '#sapa-input');
  await input.fill(text);
  await input.press('Enter');
}

async function storage(page, key) {
  return page.evaluate(([base, k]) => JSON.parse(localStorage.getItem(`sapa:${base}:demo:${k}`) || 'null'), [sapaUrl, key]);
}

async function cspViolations(page) {
  return page.evaluate(() => window.__csp);
}

async function serverMessages(token) {
  const res = await fetch(`${sapaUrl}/v1/webchat/messages?after=0`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return (await res.json()).messages;
}

before(async () => {
  assert.ok(SAPA_BIN, 'set SAPA_BIN to the sapa binary (cargo build -p gateway → target/debug/sapa)');
  assert.ok(fs.existsSync(SAPA_BIN), `SAPA_BIN ${SAPA_BIN} does not exist`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(SHOTS, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sapa-browser-'));
  sapaPort = await freePort();
  sapaUrl = `http://127.0.0.1:${sapaPort}`;
  const allowedServer = site('id');
  const deniedServer = site('id');
  allowedSite = { server: allowedServer, url: await listen(allowedServer) };
  deniedSite = { server: deniedServer, url: await listen(deniedServer) };
  fs.writeFileSync(
    path.join(tmp, 'sapa.toml'),
    `[server]\nshutdown_grace = "2s"\n[conversation]\ndebounce = "0s"\n` +
      `[webchat]\nmessages_per_minute_per_session = 8\n` +
      `[demo]\nallowed_origins = ["${allowedSite.url}"]\n`,
  );
  log(`sapa ${sapaUrl}, allowed site ${allowedSite.url}, other site ${deniedSite.url}, data ${tmp}`);
  sapa = await startSapa();
  // A second server answering with a (fake) language model, for typing and streaming.
  fakeLlm = fakeOpenAi();
  const llmUrl = await listen(fakeLlm);
  const llmPort = await freePort();
  llmSapaUrl = `http://127.0.0.1:${llmPort}`;
  fs.writeFileSync(
    path.join(tmp, 'llm.toml'),
    `[conversation]\ndebounce = "0s"\n` +
      `[llm]\nbase_url = "${llmUrl}/v1"\nmodel = "fake-model"\napi_key = "sk-test"\ntimeout = "20s"\n`,
  );
  llmSapa = await startSapa('llm', llmPort);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await killSapa().catch(() => {});
  llmSapa?.kill('SIGKILL');
  fakeLlm?.close();
  allowedSite?.server.close();
  deniedSite?.server.close();
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the embedded widget on an allowed website', async (t) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  try {
    await t.test('loads from the snippet, isolated from page styles, without globals', async () => {
      await page.goto(allowedSite.url);
      const launcher = w(page, '.launcher');
      await launcher.waitFor({ state: 'visible' });
      await eventually('the tenant name in the launcher label', async () =>
        (await launcher.getAttribute('aria-label')) === 'Buka chat — Kopi Nusantara (demo)');
      // The page forces hotpink buttons; the shadow root keeps the tenant's colour.
      await eventually('the tenant colour', async () =>
        (await launcher.evaluate((b) => getComputedStyle(b).backgroundColor)) === 'rgb(111, 78, 55)');
      assert.doesNotMatch(await launcher.evaluate((b) => getComputedStyle(b).fontFamily), /Georgia/);
      const leaked = await page.evaluate(() =>
        Object.keys(window).filter((k) => !window.__initialKeys.includes(k) && !['__initialKeys', '__csp'].includes(k)));
      assert.deepEqual(leaked, []);
    });

    await t.test('opens with the tenant name and greeting and focuses the input', async () => {
      await w(page, '.launcher').click();
      await w(page, '.panel').waitFor({ state: 'visible' });
      await eventually('the tenant name', async () => (await w(page, '.title').textContent()) === 'Kopi Nusantara (demo)');
      await eventually('the tenant greeting', async () => /selamat datang di Kopi Nusantara/.test(await w(page, '.greeting').textContent()));
      assert.equal(await w(page, '.launcher').getAttribute('aria-expanded'), 'true');
      const focused = await page.evaluate(() => document.querySelector('[data-sapa-widget]').shadowRoot.activeElement?.id);
      assert.equal(focused, 'sapa-input');
      await eventually('online', async () => (await w(page, '.presence').textContent()) === 'Online');
    });

    await t.test('answers a demo-shop question', async () => {
      await sendMessage(page, QUESTION);
      await customerWith(page, QUESTION).waitFor();
      const answer = botWith(page, '08.00');
      await answer.waitFor({ timeout: ANSWER_TIMEOUT });
      log('answer:', await answer.textContent());
      // The quoted passage is a blockquote, not "> " syntax; no table pipes.
      assert.equal(await answer.locator('blockquote').count(), 1);
      assert.ok(!(await answer.textContent()).includes('> '), 'no quote syntax shown');
      assert.ok(!(await answer.textContent()).includes('|'), 'no table syntax shown');
      const state = page.locator('li.msg.customer', { hasText: QUESTION }).locator('.state');
      await eventually('the question marked answered', async () => (await state.textContent()) === 'Dibalas');
      assert.equal(await w(page, 'time').first().evaluate((t) => /^\d{2}[.:]\d{2}$/.test(t.textContent)), true);
      await eventually('the answer scrolled into view', async () =>
        w(page, '.scroll').evaluate((s) => s.scrollHeight - s.scrollTop - s.clientHeight < 2));
      await page.screenshot({ path: path.join(SHOTS, 'widget-desktop.png') });
    });

    await t.test('keeps the history across reloads (token in localStorage)', async () => {
      await page.reload();
      await w(page, '.launcher').click();
      await botWith(page, '08.00').waitFor({ timeout: 10_000 });
      assert.equal(await customerWith(page, QUESTION).count(), 1);
      // Without the local copy, the history comes back from the server with the stored token.
      await page.evaluate((base) => localStorage.removeItem(`sapa:${base}:demo:history`), sapaUrl);
      await page.reload();
      await w(page, '.launcher').click();
      await botWith(page, '08.00').waitFor({ timeout: 10_000 });
      assert.equal(await customerWith(page, QUESTION).count(), 1);
    });

    await t.test('queues a message while the server is down, delivers it after reconnecting and replays what was missed', async () => {
      await eventually('online', async () => (await w(page, '.presence').textContent()) === 'Online');
      await killSapa('SIGKILL');
      log('sapa killed');
      await w(page, '.banner').waitFor({ state: 'visible', timeout: 10_000 });
      assert.equal(await w(page, '.presence').textContent(), 'Offline');
      // Keep this page cut off (its catch-up and sends fail; the socket opens only after a
      // successful catch-up) while the server comes back.
      const cut = `${sapaUrl}/v1/webchat/messages**`;
      await page.route(cut, (route) => route.abort('connectionrefused'));
      await sendMessage(page, OFFLINE_QUESTION);
      const pending = page.locator('li.msg.customer', { hasText: OFFLINE_QUESTION });
      await eventually('the message queued', async () => (await pending.locator('.state').textContent()) === 'Menunggu koneksi');
      const outbox = await storage(page, 'outbox');
      assert.equal(outbox.length, 1);
      assert.equal(outbox[0].text, OFFLINE_QUESTION);
      sapa = await startSapa();
      log('sapa restarted');
      // Meanwhile the same conversation continues from another device and gets an answer.
      const { token } = await storage(page, 'session');
      const other = await fetch(`${sapaUrl}/v1/webchat/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ client_message_id: 'other-device-1', text: OTHER_DEVICE_QUESTION }),
      });
      assert.equal(other.status, 202);
      await eventually('the other device answered', async () =>
        (await serverMessages(token)).some((m) => m.author === 'bot' && (m.in_reply_to || []).includes('other-device-1')), ANSWER_TIMEOUT);
      assert.equal(await w(page, '.banner').isVisible(), true, 'still offline');
      assert.equal(await customerWith(page, OTHER_DEVICE_QUESTION).count(), 0);
      await page.unroute(cut);
      log('page reconnected');
      await w(page, '.banner').waitFor({ state: 'hidden', timeout: 40_000 });
      // Replayed: what happened while this page was away...
      await customerWith(page, OTHER_DEVICE_QUESTION).waitFor({ timeout: 10_000 });
      await botWith(page, 'QRIS').waitFor({ timeout: 10_000 });
      // ...and the queued message went out and was answered.
      await botWith(page, '22.000').waitFor({ timeout: ANSWER_TIMEOUT });
      assert.equal(await customerWith(page, OTHER_DEVICE_QUESTION).count(), 1);
      assert.equal(await customerWith(page, OFFLINE_QUESTION).count(), 1);
      assert.deepEqual(await storage(page, 'outbox'), []);
      const stored = (await serverMessages(token)).filter((m) => m.text === OFFLINE_QUESTION);
      assert.equal(stored.length, 1, 'stored once');
      assert.equal(stored[0].client_message_id, outbox[0].cid, 'same client_message_id');
    });

    await t.test('renders customer text as text: no markup, no script', async () => {
      await sendMessage(page, XSS);
      const bubble = customerWith(page, 'onerror');
      await bubble.waitFor();
      assert.equal(await bubble.textContent(), XSS);
      assert.equal(await page.locator('li.msg img').count(), 0);
      // Wait for the stored echo so the page went through the server round trip too.
      await page.locator('li.msg.customer[data-id]', { hasText: 'onerror' }).waitFor({ timeout: 10_000 });
      await page.locator('li.msg.bot').nth(2).waitFor({ timeout: ANSWER_TIMEOUT });
      assert.deepEqual(dialogs, []);
    });

    await t.test('links only http(s) URLs, safely, and offers quick replies', async () => {
      await sendMessage(page, LINK_TEXT);
      const bubble = customerWith(page, 'qwfp');
      await bubble.waitFor();
      const links = await bubble.locator('a').evaluateAll((as) => as.map((a) => [a.getAttribute('href'), a.target, a.rel, a.textContent]));
      assert.deepEqual(links, [['https://example.com/zzqx?a=1', '_blank', 'noopener noreferrer nofollow', 'https://example.com/zzqx?a=1']]);
      assert.equal(await bubble.textContent(), LINK_TEXT);
      // Two unanswerable messages in a row: the bot offers a human, as a quick reply chip.
      const chip = w(page, '.chip');
      await chip.first().waitFor({ timeout: ANSWER_TIMEOUT });
      const choice = await chip.first().textContent();
      assert.equal(choice, 'Hubungi admin');
      await chip.first().click();
      await customerWith(page, choice).waitFor();
      await eventually('chips cleared', async () => (await chip.count()) === 0);
    });

    await t.test('shows a friendly message when rate limited, and sends later', async () => {
      const before = (await serverMessages((await storage(page, 'session')).token)).length;
      for (let i = 1; i <= 9; i++) await sendMessage(page, `pesan cepat ${i}`);
      const notice = w(page, '.notice');
      await notice.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(await notice.textContent(), /terlalu cepat/);
      assert.ok(await page.locator('li.msg.customer .state', { hasText: 'Menunggu giliran' }).count() > 0);
      await page.screenshot({ path: path.join(SHOTS, 'widget-rate-limited.png') });
      const queued = async () => (await storage(page, 'outbox')).length;
      const waiting = await queued();
      assert.ok(waiting > 0, 'some messages wait for the limit');
      // The next one goes out by itself once Retry-After has passed (8/min: one per 7.5 s).
      await eventually('a queued message sent after Retry-After', async () => (await queued()) < waiting, 20_000);
      const after = (await serverMessages((await storage(page, 'session')).token)).length;
      assert.ok(after > before, 'more messages stored');
    });

    await t.test('no CSP violations and no page errors', async () => {
      assert.deepEqual(await cspViolations(page), []);
      assert.deepEqual(pageErrors, []);
      assert.deepEqual(dialogs, []);
    });
  } finally {
    await context.close();
  }
});

test('mobile layout in English', async () => {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const page = await newPage(context);
  try {
    await page.goto(`${allowedSite.url}/en`);
    const launcher = w(page, '.launcher');
    await launcher.waitFor();
    await eventually('the tenant name in the launcher label', async () =>
      (await launcher.getAttribute('aria-label')) === 'Open chat — Kopi Nusantara (demo)');
    await launcher.tap();
    const panel = w(page, '.panel');
    await panel.waitFor();
    assert.deepEqual(await panel.boundingBox(), { x: 0, y: 0, width: 390, height: 844 });
    assert.equal(await w(page, '#sapa-input').getAttribute('placeholder'), 'Write a message…');
    await sendMessage(page, 'What time does the Blok M outlet open on Sunday?');
    await page.locator('li.msg.bot').first().waitFor({ timeout: ANSWER_TIMEOUT });
    await page.screenshot({ path: path.join(SHOTS, 'widget-mobile.png') });
    // Escape-free close on mobile: the header button closes the panel and returns focus.
    await w(page, '.close').tap();
    await panel.waitFor({ state: 'hidden' });
    assert.deepEqual(await cspViolations(page), []);
  } finally {
    await context.close();
  }
});

test('the message length limit is shown before sending', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  try {
    await page.goto(allowedSite.url);
    await w(page, '.launcher').click();
    const input = w(page, '#sapa-input');
    await input.fill('a'.repeat(2001));
    assert.equal(await w(page, '.counter').textContent(), 'Pesan terlalu panjang: 2001/2000 karakter');
    assert.equal(await w(page, '.send').isDisabled(), true);
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    await input.press('Enter');
    assert.equal(await page.locator('li.msg.customer').count(), 0);
    await input.fill('a'.repeat(2000));
    assert.equal(await w(page, '.send').isDisabled(), false);
    // Screen readers: named controls and a live log of the conversation.
    assert.equal(await page.getByRole('button', { name: 'Kirim pesan' }).count(), 1);
    assert.equal(await page.getByRole('button', { name: 'Tutup chat' }).count(), 1);
    assert.equal(await page.getByRole('textbox', { name: 'Pesan Anda' }).count(), 1);
    assert.equal(await page.getByRole('log', { name: 'Percakapan' }).getAttribute('aria-live'), 'polite');
    assert.equal(await page.getByRole('dialog', { name: 'Kopi Nusantara (demo)' }).count(), 1);
    // Keyboard: Escape closes the panel and gives focus back to the launcher.
    await input.press('Escape');
    await w(page, '.panel').waitFor({ state: 'hidden' });
    const focused = await page.evaluate(() => document.querySelector('[data-sapa-widget]').shadowRoot.activeElement?.className);
    assert.equal(focused, 'launcher');
  } finally {
    await context.close();
  }
});

test('the hosted chat page /chat/demo', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  try {
    const response = await page.goto(`${sapaUrl}/chat/demo`);
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);
    assert.equal(await page.title(), 'Kopi Nusantara (demo)');
    await w(page, '.panel').waitFor();
    assert.equal(await w(page, '.launcher').isVisible(), false);
    await eventually('online', async () => (await w(page, '.presence').textContent()) === 'Online');
    await sendMessage(page, QUESTION);
    await botWith(page, '08.00').waitFor({ timeout: ANSWER_TIMEOUT });
    await page.screenshot({ path: path.join(SHOTS, 'chat-page.png') });
    assert.deepEqual(await cspViolations(page), []);
  } finally {
    await context.close();
  }
});

test('typing indicator, then the answer streamed as the model writes it', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  try {
    await page.goto(`${llmSapaUrl}/chat/demo`);
    await eventually('online', async () => (await w(page, '.presence').textContent()) === 'Online');
    await sendMessage(page, QUESTION);
    const typing = w(page, '.typing');
    await typing.waitFor({ state: 'visible', timeout: 15_000 });
    const stream = w(page, '.streaming');
    await stream.waitFor({ state: 'visible', timeout: 15_000 });
    const partial = await stream.textContent();
    log('streamed so far:', partial);
    assert.ok(partial.length > 0 && partial.length < STREAMED_REPLY.length, `partial text: ${partial}`);
    assert.ok(STREAMED_REPLY.startsWith(partial), `streamed text is the reply, not JSON: ${partial}`);
    assert.equal(await typing.isVisible(), false);
    await page.screenshot({ path: path.join(SHOTS, 'widget-streaming.png') });
    const final = botWith(page, 'Sampai jumpa');
    await final.waitFor({ timeout: ANSWER_TIMEOUT });
    assert.equal(await final.textContent(), STREAMED_REPLY);
    await stream.waitFor({ state: 'hidden' });
    assert.deepEqual(await cspViolations(page), []);
  } finally {
    await context.close();
  }
});

test('a website that is not allowed cannot use the tenant\'s chat', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  try {
    await page.goto(deniedSite.url);
    await w(page, '.launcher').click();
    const notice = w(page, '.notice');
    await notice.waitFor({ state: 'visible' });
    assert.match(await notice.textContent(), /tidak tersedia di situs ini/);
    assert.equal(await w(page, '#sapa-input').isDisabled(), true);
    assert.equal(await page.evaluate((base) => Object.keys(localStorage).filter((k) => k.startsWith(`sapa:${base}`)).length, sapaUrl), 0, 'no session');
    // The page's own scripts cannot use the API either: CORS blocks it in the browser...
    const fetched = await page.evaluate(async (base) => {
      try {
        await fetch(`${base}/v1/webchat/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"tenant":"demo"}' });
        return 'readable';
      } catch {
        return 'blocked';
      }
    }, sapaUrl);
    assert.equal(fetched, 'blocked');
    // ...the server refuses the origin outright...
    const refused = await fetch(`${sapaUrl}/v1/webchat/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: deniedSite.url },
      body: '{"tenant":"demo"}',
    });
    assert.equal(refused.status, 403);
    assert.equal((await refused.json()).error.code, 'origin_not_allowed');
    // ...and a WebSocket opened from that page with a valid token is rejected.
    const created = await fetch(`${sapaUrl}/v1/webchat/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"tenant":"demo"}',
    });
    assert.equal(created.status, 201, 'no Origin (server to server) still works');
    const { session_token: token } = await created.json();
    const socket = await page.evaluate((url) => new Promise((resolve) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve('open');
      ws.onerror = () => resolve('rejected');
    }), `${sapaUrl.replace(/^http/, 'ws')}/v1/webchat/ws?token=${encodeURIComponent(token)}`);
    assert.equal(socket, 'rejected');
    await page.screenshot({ path: path.join(SHOTS, 'widget-not-allowed.png') });
  } finally {
    await context.close();
  }
});
