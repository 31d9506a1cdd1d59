// The agent console in a real browser: Debian's Chromium driven by playwright-core against the
// real `sapa` binary (SAPA_BIN) with its own temp data dir and port, and a fake Graph API (the
// demo tenant's WhatsApp number) that records what Sapa sends. The demo owner sets a password
// through the link `sapa serve` prints; an agent with a WhatsApp number logs in with their
// password and the one-time code read from the fake Graph API; a customer asks for a human in
// the hosted web chat page; the chat appears live, the agent claims it and replies, the widget
// shows the reply, the agent hands it back, and the bot answers the next question.
// Screenshots go to SCREENSHOT_DIR (default target/browser-screenshots).
//
//   cargo build -p sapa-tests && cd tests/browser && npm ci && SAPA_BIN=../../target/debug/sapa-e2e-server node console.test.mjs

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
const PASSWORD = 'pemilik-kopi-2026';
const AGENT = 'agen@demo.local';
const AGENT_PASSWORD = 'agen-kopi-2026!';
const AGENT_PHONE = '6281234567890';
const PHONE_NUMBER_ID = '109876543210';
const XSS = '<img src=x onerror=alert(1)> halo';

let tmp;
let sapa;
let base;
let setPasswordLink;
let browser;
let graph;
const graphSends = [];
const dialogs = [];
const pageErrors = [];

/** A fake Graph API: accepts every send and records its JSON body. */
async function fakeGraph() {
  let n = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.method === 'POST' && req.url.endsWith('/messages')) {
        const json = JSON.parse(body || '{}');
        graphSends.push({ url: req.url, body: json });
        n += 1;
        res.end(JSON.stringify({ messaging_product: 'whatsapp', contacts: [{ input: json.to, wa_id: json.to }], messages: [{ id: `wamid.fake${n}` }] }));
      } else {
        res.end('{}');
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** Runs a `sapa` command against the test's config and data dir; returns its stdout. */
async function sapaCommand(args, input) {
  const child = spawn(SAPA_BIN, ['--config', path.join(tmp, 'sapa.toml'), '--data-dir', path.join(tmp, 'data'), ...args], {
    cwd: tmp, env: { PATH: process.env.PATH, SAPA_TELEMETRY__FILTER: 'warn' }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { err += c; });
  child.stdin.end(input ?? '');
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, `sapa ${args.join(' ')} failed:\n${out}\n${err}`);
  return out;
}

/** Starts `sapa serve`; resolves with its stdout once it listens (and printed `until`, if given). */
async function serve(port, until) {
  const logFile = fs.openSync(path.join(tmp, 'sapa.log'), 'a');
  const child = spawn(
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
    const timer = setTimeout(() => reject(new Error(`sapa did not start within 90 s:\n${out}`)), 90_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('Sapa is listening on') && (!until || until.test(out))) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`sapa exited (${code}):\n${out}`)); });
  });
  return { child, out };
}

before(async () => {
  assert.ok(SAPA_BIN, 'SAPA_BIN must point at the sapa binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sapa-console-'));
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'sapa.toml'), '[conversation]\ndebounce = "0s"\n');
  graph = await fakeGraph();
  const port = await freePort();
  // The first start seeds the demo tenant and prints its owner's one-time link.
  const linkPattern = /(http:\/\/\S+\/console\/set-password#token=\S+)/;
  const first = await serve(port, linkPattern);
  setPasswordLink = linkPattern.exec(first.out)[1];
  const exited = new Promise((resolve) => first.child.once('exit', resolve));
  first.child.kill('SIGTERM');
  await exited;
  // The demo tenant's WhatsApp number (the fake Graph API) delivers staff login codes; an agent
  // with a WhatsApp number gets one at every login.
  await sapaCommand([
    'channel', 'add', 'whatsapp', '--tenant', 'demo',
    '--phone-number-id', PHONE_NUMBER_ID, '--app-secret', 'test-app-secret', '--access-token', 'test-token',
    '--verify-token', 'test-verify', '--api-base-url', `http://127.0.0.1:${graph.address().port}`,
    '--otp-template', 'login_code',
  ]);
  await sapaCommand(['staff', 'add', '--tenant', 'demo', '--email', AGENT, '--role', 'agent', '--whatsapp', `+${AGENT_PHONE}`, '--password-stdin'], `${AGENT_PASSWORD}\n`);
  sapa = (await serve(port)).child;
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  sapa?.kill('SIGKILL');
  graph?.close();
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
});

/** The one-time code the fake Graph API got for `phone` (the authentication template's body parameter). */
function loginCode(phone) {
  const sent = graphSends.filter((s) => s.body.to === phone && s.body.type === 'template');
  const last = sent[sent.length - 1];
  if (!last) return null;
  const body = last.body.template.components.find((c) => c.type === 'body');
  return body.parameters[0].text;
}

/** The customer's side: the hosted web chat page (the widget, opened). */
async function customer(context) {
  const page = await context.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/chat/demo`);
  await eventually('the widget online', async () => (await page.locator('.presence').textContent()) === 'Online');
  return {
    page,
    async say(text) {
      const input = page.locator('#sapa-input');
      await input.fill(text);
      await input.press('Enter');
      await page.locator('li.msg.customer[data-id]', { hasText: text.slice(0, 20) }).last().waitFor({ timeout: 10_000 });
    },
    bots: () => page.locator('li.msg.bot').count(),
    agentReply: (text) => page.locator('li.msg.agent .bubble', { hasText: text }),
  };
}

test('an agent logs in with a WhatsApp code, takes over a widget chat, and hands it back', async () => {
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

  // The agent logs in: password, then the code WhatsApp delivered (read from the fake Graph API).
  await page.goto(`${base}/console/login?tenant=demo`);
  await page.fill('#email', AGENT);
  await page.fill('#password', AGENT_PASSWORD);
  await page.screenshot({ path: path.join(SHOTS, 'console-login.png') });
  await page.click('button[type=submit]');
  await page.locator('#code').waitFor();
  const code = await eventually('the login code at the fake Graph API', async () => loginCode(AGENT_PHONE));
  assert.match(code, /^\d{6}$/);
  await page.screenshot({ path: path.join(SHOTS, 'console-code.png') });
  // A wrong code is refused with the attempts left; the delivered one signs in.
  await page.fill('#code', code === '000000' ? '111111' : '000000');
  await page.click('button[type=submit]');
  await page.locator('.error', { hasText: '4' }).waitFor();
  await page.fill('#code', code);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/console`);
  await page.locator('.tabs button[data-queue=waiting]').waitFor();
  // The live event stream is connected (the fallback poll runs only every 30 s).
  await page.locator('#live.on').waitFor({ timeout: 10_000 });

  // A customer writes in the widget, then asks for a human; the chat appears in the waiting
  // queue without a reload, pushed by the event stream: well before the 30-second fallback poll.
  const visitor = await customer(await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'id-ID' }));
  await visitor.say(XSS);
  await eventually('the answer to the first message', async () => (await visitor.bots()) > 0, 30_000);
  await visitor.say('mau bicara dengan admin');
  const item = page.locator('.items button[data-id]').first();
  await item.waitFor({ timeout: 10_000 });
  await page.screenshot({ path: path.join(SHOTS, 'console-queue.png') });

  // Claim and reply; the widget shows the agent's reply.
  await item.click();
  await page.locator('#claim').click();
  await eventually('the claim', async () => (await page.locator('#claim').count()) === 0);
  await page.fill('#reply', 'Halo kak, saya dari tim Kopi Nusantara. Ada yang bisa dibantu?');
  await page.locator('#send').click();
  await visitor.agentReply('Halo kak, saya dari tim').waitFor({ timeout: 20_000 });
  // The widget says a person wrote it.
  assert.match(await visitor.page.locator('li.msg.agent .meta').first().textContent(), /^Admin · /);
  await visitor.page.screenshot({ path: path.join(SHOTS, 'console-widget-agent-reply.png') });
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
  const botsBefore = await visitor.bots();
  await visitor.say('jam buka outlet Blok M hari Minggu?');
  await page.locator('.msg.customer', { hasText: 'jam buka outlet Blok M' }).first().waitFor({ timeout: 10_000 });
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await visitor.bots(), botsBefore);

  // The phone layout: the queue, then the conversation full screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('.thread-head .back').click();
  await page.locator('.tabs button[data-queue=mine]').click();
  const mine = page.locator('.items button[data-id]').first();
  await mine.waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-phone-queue.png') });
  await mine.click();
  await page.locator('#handback').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-phone.png') });
  // On a phone the details are one more screen, with a way back to the chat.
  await page.locator('#info').click();
  await page.locator('#handoff-reason').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'console-phone-details.png') });
  await page.locator('#details-back').click();
  await page.locator('#handback').waitFor();

  // Hand back: the bot answers the next question in the widget.
  await page.locator('#handback').click();
  await eventually('the hand-back', async () => (await page.locator('#handback').count()) === 0);
  await visitor.say('jam buka outlet Blok M hari Minggu?');
  await eventually('a bot answer after the hand-back', async () => (await visitor.bots()) > botsBefore, 30_000);

  assert.deepEqual(dialogs, [], 'no script ran from customer text');
  assert.deepEqual(pageErrors, []);
  await context.close();
});
