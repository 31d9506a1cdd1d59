// The agent console in a real browser: Debian's Chromium driven by playwright-core against the
// real `sapa` binary (SAPA_BIN) with its own temp data dir and port. The demo owner sets a
// password through the link `sapa serve` prints, logs in, sees a customer's request for a human
// appear, claims it, replies (the customer's web chat gets it), and hands it back to the bot.
// Screenshots go to SCREENSHOT_DIR (default target/browser-screenshots).
//
//   cargo build -p sapa-tests && cd tests/browser && npm ci && SAPA_BIN=../../target/debug/sapa-e2e-server node console.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const SAPA_BIN = process.env.SAPA_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR || path.join(repo, 'target', 'browser-screenshots'));
const PASSWORD = 'pemilik-kopi-2026';
const XSS = '<img src=x onerror=alert(1)> halo';

let tmp;
let sapa;
let base;
let setPasswordLink;
let browser;
const dialogs = [];
const pageErrors = [];

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function eventually(what, check, timeout = 20_000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  assert.ok(SAPA_BIN, 'SAPA_BIN must point at the sapa binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sapa-console-'));
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'sapa.toml'), '[conversation]\ndebounce = "0s"\n');
  const port = await freePort();
  const logFile = fs.openSync(path.join(tmp, 'sapa.log'), 'a');
  sapa = spawn(
    SAPA_BIN,
    ['--config', path.join(tmp, 'sapa.toml'), '--data-dir', path.join(tmp, 'data'), 'serve', '--bind', `127.0.0.1:${port}`],
    {
      cwd: tmp,
      env: { PATH: process.env.PATH, SAPA_TELEMETRY__FILTER: 'warn', SAPA_SERVER__ADMIN_BIND: '127.0.0.1:0' },
      stdio: ['ignore', 'pipe', logFile],
    },
  );
  let out = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sapa did not print the owner link within 90 s:\n${out}`)), 90_000);
    sapa.stdout.on('data', (chunk) => {
      out += chunk;
      const link = /(http:\/\/\S+\/console\/set-password#token=\S+)/.exec(out);
      if (out.includes('Sapa is listening on') && link) {
        clearTimeout(timer);
        setPasswordLink = link[1];
        resolve();
      }
    });
    sapa.once('exit', (code) => { clearTimeout(timer); reject(new Error(`sapa exited (${code}):\n${out}`)); });
  });
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  sapa?.kill('SIGKILL');
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
});

/** The customer's side, over the web chat API. */
async function customer() {
  const res = await fetch(`${base}/v1/webchat/sessions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 'demo' }),
  });
  const session = await res.json();
  let n = 0;
  return {
    id: session.conversation_id,
    async say(text) {
      n += 1;
      const r = await fetch(`${base}/v1/webchat/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${session.session_token}` },
        body: JSON.stringify({ client_message_id: `m-${n}`, text }),
      });
      assert.equal(r.status, 202);
    },
    async messages() {
      const r = await fetch(`${base}/v1/webchat/messages`, { headers: { authorization: `Bearer ${session.session_token}` } });
      return (await r.json()).messages;
    },
  };
}

test('an agent takes over a web chat in the console and hands it back', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'id-ID' });
  const page = await context.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => pageErrors.push(e.message));

  // The owner sets a password through the printed link.
  await page.goto(setPasswordLink);
  await page.fill('#password', PASSWORD);
  await page.fill('#again', PASSWORD);
  await page.click('button[type=submit]');
  await page.getByText('Kata sandi tersimpan').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-set-password.png') });

  // Log in.
  await page.goto(`${base}/console/login?tenant=demo`);
  await page.fill('#email', 'owner@demo.local');
  await page.fill('#password', PASSWORD);
  await page.screenshot({ path: path.join(SHOTS, 'console-login.png') });
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/console`);
  await page.locator('.tabs button[data-queue=waiting]').waitFor();
  // The live event stream is connected (the fallback poll runs only every 30 s).
  await page.locator('#live.on').waitFor({ timeout: 10_000 });

  // A customer asks for a human; the chat appears in the waiting queue without a reload,
  // pushed by the event stream: well before the 30-second fallback poll could fetch it.
  const visitor = await customer();
  await visitor.say(XSS);
  // Answered on its own (not in one batch with the request for a person).
  await eventually('the answer to the first message', async () =>
    (await visitor.messages()).some((m) => m.author === 'bot'));
  await visitor.say('mau bicara dengan admin');
  const item = page.locator(`.items button[data-id="${visitor.id}"]`);
  await item.waitFor({ timeout: 10_000 });
  await page.screenshot({ path: path.join(SHOTS, 'console-queue.png') });

  // Claim and reply.
  await item.click();
  await page.locator('#claim').click();
  await eventually('the claim', async () => (await page.locator('#claim').count()) === 0);
  await page.fill('#reply', 'Halo kak, saya dari tim Kopi Nusantara. Ada yang bisa dibantu?');
  await page.locator('#send').click();
  await eventually('the agent reply in the customer web chat', async () =>
    (await visitor.messages()).some((m) => m.author === 'agent' && m.text.startsWith('Halo kak, saya dari tim')));
  await page.locator('.msg.agent').first().waitFor();
  // The customer's markup is shown as text, never run.
  assert.ok(await page.getByText('<img src=x onerror=alert(1)>', { exact: false }).first().isVisible());
  // The details pane (third column on a desktop): the handoff reason and the customer's channels.
  await page.locator('#handoff-reason').waitFor();
  assert.equal(await page.locator('#handoff-reason').textContent(), 'pelanggan minta admin');
  await page.screenshot({ path: path.join(SHOTS, 'console-conversation.png') });
  // The English UI, one click away (remembered), and back to Indonesian.
  await page.locator('#lang').click();
  await page.getByRole('tab', { name: 'Waiting' }).waitFor();
  await page.locator('#handoff-reason', { hasText: 'customer asked for a person' }).waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-conversation-en.png') });
  await page.locator('#lang').click();
  await page.getByRole('tab', { name: 'Menunggu' }).waitFor();

  // While the agent has it, the bot stays silent.
  const botsBefore = (await visitor.messages()).filter((m) => m.author === 'bot').length;
  await visitor.say('jam buka outlet Blok M hari Minggu?');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await visitor.messages()).filter((m) => m.author === 'bot').length, botsBefore);

  // The phone layout: the queue, then the conversation full screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('.thread-head .back').click();
  await page.locator('.tabs button[data-queue=mine]').click();
  await page.locator(`.items button[data-id="${visitor.id}"]`).waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-phone-queue.png') });
  await page.locator(`.items button[data-id="${visitor.id}"]`).click();
  await page.locator('#handback').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-phone.png') });
  // On a phone the details are one more screen, with a way back to the chat.
  await page.locator('#info').click();
  await page.locator('#handoff-reason').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-phone-details.png') });
  await page.locator('#details-back').click();
  await page.locator('#handback').waitFor();

  // Hand back: the bot answers the next question.
  await page.locator('#handback').click();
  await eventually('the hand-back', async () => (await page.locator('#handback').count()) === 0);
  await visitor.say('jam buka outlet Blok M hari Minggu?');
  await eventually('a bot answer after the hand-back', async () =>
    (await visitor.messages()).filter((m) => m.author === 'bot').length > botsBefore, 30_000);

  assert.deepEqual(dialogs, [], 'no script ran from customer text');
  assert.deepEqual(pageErrors, []);
  await context.close();
});
