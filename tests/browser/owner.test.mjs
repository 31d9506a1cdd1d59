// The owner pages in a real browser: Debian's Chromium driven by playwright-core against the
// real `sapa` binary (SAPA_BIN) with its own temp data dir and port. The demo owner sets a
// password through the link `sapa serve` prints, logs in, edits the bot's instructions, tries
// the draft, publishes; uploads Markdown files (file picker and drag and drop) and a web chat
// customer is answered from one; answers an unanswered question; opens the usage page; writes
// a flow (a mistake shown by line and column, fixed, saved, deleted); creates and revokes an API
// key. Each page is photographed on a desktop (1280×800) and a phone (390×844; the Flows page
// 375×812) into SCREENSHOT_DIR (default target/browser-screenshots). No page errors, no CSP
// violations, no browser dialogs.
//
//   cargo build -p sapa-tests --bin sapa-e2e-server && cd tests/browser && npm ci && SAPA_BIN=../../target/debug/sapa-e2e-server node owner.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
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
const INSTRUCTIONS = 'Sapa pelanggan dengan "Kak". Jawab singkat dan ramah. Jangan menjanjikan diskon yang tidak ada di daftar promo.';
const PARKING = '# Parkir bus\n\nParkir bus pariwisata tersedia di basement B2 outlet Kemang, gratis untuk rombongan di atas dua puluh orang.\n\n## Reservasi rombongan\n\nHubungi kami sehari sebelumnya agar meja untuk rombongan disiapkan.\n';
const WIFI = '# Wi-Fi\n\nSemua outlet punya Wi-Fi gratis. Kata sandinya tertulis di struk pembelian.\n';
const ANSWER = 'Belum ada layanan antar jemput bandara, Kak. Silakan pakai taksi daring ke outlet kami.';

let tmp;
let sapa;
let base;
let setPasswordLink;
let browser;
const dialogs = [];
const pageErrors = [];
const consoleErrors = [];

before(async () => {
  assert.ok(SAPA_BIN, 'SAPA_BIN must point at the sapa binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sapa-owner-'));
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

/** Runs the `sapa` CLI on the server's data dir; resolves with its exit code. */
function cli(args, stdin) {
  return new Promise((resolve, reject) => {
    const child = spawn(SAPA_BIN, ['--config', path.join(tmp, 'sapa.toml'), '--data-dir', path.join(tmp, 'data'), ...args], {
      cwd: tmp, env: { PATH: process.env.PATH, SAPA_TELEMETRY__FILTER: 'warn' }, stdio: ['pipe', 'ignore', 'inherit'],
    });
    child.once('error', reject);
    child.once('exit', resolve);
    child.stdin.end(stdin || '');
  });
}

/** A web chat customer, over the web chat API. */
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
    async botReplies() {
      const r = await fetch(`${base}/v1/webchat/messages`, { headers: { authorization: `Bearer ${session.session_token}` } });
      return (await r.json()).messages.filter((m) => m.author === 'bot').map((m) => m.text || '');
    },
  };
}

/** Asks `question` in a new web chat; returns the bot's first reply. */
async function ask(question) {
  const visitor = await customer();
  await visitor.say(question);
  return eventually(`the bot's answer to "${question}"`, async () => (await visitor.botReplies())[0], 30_000);
}

/** The CSP violations the page reported (collected by an init script, see below). */
const cspViolations = (page) => page.evaluate(() => window.__csp || []);

async function shoot(page, name) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function shootPhone(page, name, ready) {
  await page.setViewportSize({ width: 390, height: 844 });
  if (ready) await ready();
  await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`) });
  // Nothing wider than the phone: no sideways scrolling.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name} scrolls sideways on a phone by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

test('an owner runs the bot, knowledge, unanswered, usage, flows and API key pages', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'id-ID' });
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await context.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) consoleErrors.push(m.text()); });
  const csp = [];
  const checkCsp = async () => { csp.push(...await cspViolations(page)); };

  // The owner sets a password through the printed link and logs in.
  await page.goto(setPasswordLink);
  await page.fill('#password', PASSWORD);
  await page.fill('#again', PASSWORD);
  await page.click('button[type=submit]');
  await page.getByText('Kata sandi tersimpan').waitFor();
  await page.goto(`${base}/console/login?tenant=demo`);
  await page.fill('#email', 'owner@demo.local');
  await page.fill('#password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/console`);
  // Owners get the navigation to their pages.
  await page.locator('.owner-nav a[data-page=bot]').waitFor();

  // ----- Bot: edit the instructions, try the draft, check regressions, publish. -----
  await page.locator('.owner-nav a[data-page=bot]').click();
  await page.waitForURL(`${base}/console/bot`);
  await page.locator('#instructions').waitFor();
  await page.fill('#instructions', INSTRUCTIONS);
  await page.fill('#keywords', 'komplain, refund, admin');
  // Follow-up rules set in the console (instead of sapa.toml).
  await page.locator('#follow-up-box summary').click();
  await page.locator('#follow-up-on').check();
  await page.selectOption('#follow-up-after', '30m');
  await page.fill('#follow-up-max', '1');
  await page.fill('#follow-up-text', 'Kak, masih ada yang ingin ditanyakan?');
  await page.locator('#follow-up-box').scrollIntoViewIfNeeded();
  await shoot(page, 'owner-bot-follow-up');
  await page.locator('#save-draft').click();
  await page.locator('#bot-status.ok', { hasText: 'Draf tersimpan' }).waitFor();
  // The form is filled back from what the server stored.
  assert.equal(await page.locator('#follow-up-after').inputValue(), '30m');
  assert.equal(await page.locator('#follow-up-max').inputValue(), '1');
  // A real customer asked a price; from that conversation the owner adds the question to
  // the golden set in one click (what the bot cites for it today is the expected document).
  const priceCustomer = await customer();
  await priceCustomer.say('berapa harga kopi susu gula aren?');
  await eventually('the answer about the price', async () => (await priceCustomer.botReplies()).length > 0, 30_000);
  await page.goto(`${base}/console?conversation=${encodeURIComponent(priceCustomer.id)}`);
  const fromChat = page.locator('.msg.customer', { hasText: 'kopi susu gula aren' }).locator('button[data-golden]');
  await fromChat.click();
  await page.locator('.msg.customer .golden-note.ok').waitFor({ timeout: 30_000 });
  const priceDoc = await page.locator('.msg.customer .golden-note.ok').getAttribute('data-golden-doc');
  assert.ok(priceDoc, 'the golden question names the document the bot cites');
  await page.goto(`${base}/console/bot`);
  await page.locator('#instructions').waitFor();

  // Try the draft; its answer becomes a golden question too, in one click.
  await page.fill('#try-text', 'jam buka outlet Blok M hari Minggu?');
  await page.locator('#try-send').click();
  await page.locator('#try-log .bubble.bot:not(.pending)').waitFor({ timeout: 30_000 });
  await page.locator('#try-log .bubble.bot .add-golden').click();
  await page.locator('#try-log .golden-added').waitFor();
  const golden = await page.evaluate(async () => (await (await fetch('/v1/console/golden')).text()));
  assert.match(golden, /jam buka outlet Blok M hari Minggu\?/);
  assert.match(golden, /berapa harga kopi susu gula aren\?/);

  // The check passes both golden questions with the draft and the live version.
  await page.locator('#run-regression').click();
  await eventually('a clean regression report', async () =>
    /2 lulus.*0 gagal.*2 lulus.*0 gagal/s.test(await page.locator('#regression .scores').textContent().catch(() => '')), 60_000);
  // A draft that hands "hari minggu" questions to a person breaks the Sunday-hours question:
  // the report puts it first, and publishing asks for confirmation.
  await page.fill('#keywords', 'komplain, refund, admin, hari minggu');
  await page.locator('#save-draft').click();
  await page.locator('#bot-status.ok', { hasText: 'Draf tersimpan' }).waitFor();
  await page.locator('#run-regression').click();
  await page.locator('#newly-failing li', { hasText: 'jam buka outlet Blok M hari Minggu?' }).waitFor({ timeout: 60_000 });
  // What went wrong, in the page's language: expected the hours document, got a handoff.
  assert.match(await page.locator('#newly-failing li .expect').first().textContent(), /profil-dan-lokasi\.md/);
  assert.match(await page.locator('#newly-failing li .got').first().textContent(), /Dialihkan ke tim/);
  assert.match(await page.locator('#regression .scores').textContent(), /1 lulus.*1 gagal.*2 lulus.*0 gagal/s);
  await page.locator('#publish').click();
  await page.locator('#publish-confirm').waitFor({ timeout: 60_000 });
  await page.locator('#regression').scrollIntoViewIfNeeded();
  await shoot(page, 'owner-bot-regression');
  // The owner backs off: the keyword goes, and the draft publishes without a question.
  await page.fill('#keywords', 'komplain, refund, admin');
  await page.locator('#save-draft').click();
  await page.locator('#bot-status.ok', { hasText: 'Draf tersimpan' }).waitFor();
  await page.locator('#publish').click();
  await page.locator('#bot-status.ok', { hasText: 'Diterbitkan sebagai versi' }).waitFor({ timeout: 60_000 });
  await page.locator('#versions li[data-version] .tag.current').first().waitFor();
  const versions = await page.evaluate(async () => (await (await fetch('/v1/console/bot/versions')).json()).versions);
  assert.equal(versions[0].regression.draft.passed, 2, JSON.stringify(versions[0]));
  await page.locator('#versions li[data-version] .regression-tag', { hasText: '2/2' }).first().waitFor();
  // The golden set's card: both questions, a JSONL export, and an import that names bad lines.
  await page.locator('#golden-slot summary', { hasText: '2 pertanyaan uji' }).waitFor();
  assert.equal(await page.locator('#golden-export').getAttribute('href'), '/v1/console/golden?format=jsonl');
  await page.setInputFiles('#golden-file', [{
    name: 'golden.jsonl', mimeType: 'application/x-ndjson',
    buffer: Buffer.from('{"query": "ada menu vegan?", "doc": "menu-dan-harga.md"}\n{"query": "tanpa jawaban"}\n'),
  }]);
  await page.locator('#golden-status.error', { hasText: 'baris 2' }).waitFor();
  await page.locator('#golden-slot summary', { hasText: '3 pertanyaan uji' }).waitFor();
  const confirm = page.locator('#publish-anyway');
  const live = await page.evaluate(async () => (await (await fetch('/v1/console/bot/versions')).json()).versions[0].settings.instructions);
  assert.equal(live, INSTRUCTIONS);
  // The version history with the published change.
  await page.locator('#versions').scrollIntoViewIfNeeded();
  await shoot(page, 'owner-bot-versions');
  await page.evaluate(() => document.getElementById('owner-page').scrollTo(0, 0));
  await shoot(page, 'owner-bot');
  await shootPhone(page, 'owner-bot');
  // Restore the first version (asks once more), then publish the edited draft again.
  await page.locator('#versions li[data-version="1"] button[data-restore]').click();
  await page.locator('#versions li[data-version="1"] button[data-restore]', { hasText: 'Yakin?' }).click();
  await page.locator('#bot-status.ok', { hasText: 'Dipulihkan sebagai versi' }).waitFor();
  await eventually('the restored version live', async () =>
    (await page.evaluate(async () => (await (await fetch('/v1/console/bot/versions')).json()).versions[0].note || '')).includes('restored from version 1'));
  await page.fill('#instructions', INSTRUCTIONS);
  await page.locator('#publish').click();
  await eventually('the edited draft live again', async () => {
    if (await confirm.count()) await confirm.click();
    const versions = (await page.evaluate(async () => (await (await fetch('/v1/console/bot/versions')).json()).versions));
    return versions[0].settings.instructions === INSTRUCTIONS && !versions[0].note;
  }, 30_000);
  await checkCsp();

  // ----- Knowledge: upload two Markdown files (picker and drag and drop), preview, search. -----
  await page.locator('.owner-nav a[data-page=knowledge]').click();
  await page.waitForURL(`${base}/console/knowledge`);
  await page.locator('#document-list').waitFor();
  await page.setInputFiles('#file-input', [{ name: 'parkir-bus.md', mimeType: 'text/markdown', buffer: Buffer.from(PARKING) }]);
  await page.evaluate((text) => {
    const data = new DataTransfer();
    data.items.add(new File([text], 'wifi.md', { type: 'text/markdown' }));
    document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  }, WIFI);
  await page.locator('#uploads li.done[data-file="parkir-bus.md"]').waitFor({ timeout: 30_000 });
  await page.locator('#uploads li.done[data-file="wifi.md"]').waitFor({ timeout: 30_000 });
  const parking = page.locator('#document-list li[data-name="parkir-bus.md"]');
  await parking.waitFor();
  assert.match(await parking.textContent(), /potongan/);
  await parking.locator('button[data-preview]').click();
  await parking.locator('.chunks li', { hasText: 'basement B2' }).waitFor();
  await page.fill('#search-q', 'parkir bus pariwisata');
  await page.locator('#search-go').click();
  await page.locator('#threshold').waitFor();
  assert.match(await page.locator('#search-results .hits li').first().textContent(), /parkir-bus\.md/);
  // The new document with its passages open, beside the search playground.
  await parking.scrollIntoViewIfNeeded();
  await shoot(page, 'owner-knowledge');
  await shootPhone(page, 'owner-knowledge', () => page.evaluate(() => document.getElementById('owner-page').scrollTo(0, 0)));
  await checkCsp();
  // Replace a document with a renamed file, then delete it (asks once more).
  await page.locator('#document-list li[data-name="wifi.md"] input[type=file]').setInputFiles([
    { name: 'wifi-outlet.md', mimeType: 'text/markdown', buffer: Buffer.from(WIFI.replace('gratis', 'gratis dan cepat')) }]);
  const renamed = page.locator('#document-list li[data-name="wifi-outlet.md"]');
  await renamed.waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('#document-list li[data-name="wifi.md"]').count(), 0);
  await renamed.locator('button[data-delete]').click();
  await renamed.locator('button[data-delete]', { hasText: 'Yakin?' }).click();
  await page.locator('#documents-status.ok', { hasText: 'wifi-outlet.md' }).waitFor();
  await eventually('the deleted document to leave the list', async () => (await renamed.count()) === 0);
  // A customer in the widget (the hosted chat page) is answered from the new document at once.
  const widgetContext = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'id-ID' });
  const widget = await widgetContext.newPage();
  widget.on('pageerror', (e) => pageErrors.push(e.message));
  await widget.goto(`${base}/chat/demo`);
  await eventually('the widget online', async () => (await widget.locator('.presence').textContent()) === 'Online');
  await widget.locator('#sapa-input').fill('di mana parkir bus pariwisata?');
  await widget.locator('#sapa-input').press('Enter');
  await widget.locator('li.msg.bot .bubble', { hasText: 'B2' }).waitFor({ timeout: 30_000 });
  await widget.screenshot({ path: path.join(SHOTS, 'owner-knowledge-widget.png') });
  await widgetContext.close();

  // ----- Unanswered: a question the bot cannot answer, answered by the owner. -----
  const unanswered = await ask('apakah ada layanan antar jemput bandara?');
  assert.doesNotMatch(unanswered, /taksi daring/);
  await page.locator('.owner-nav a[data-page=unanswered]').click();
  await page.waitForURL(`${base}/console/unanswered`);
  const group = page.locator('#groups li.group', { hasText: 'bandara' });
  await eventually('the unanswered question on the page', async () => {
    if (await group.count()) return true;
    await page.reload();
    await page.locator('#unanswered-slot ul, #no-unanswered').first().waitFor();
    return (await group.count()) > 0;
  });
  assert.equal(await page.locator('#export-csv').getAttribute('href'), '/v1/console/unanswered?format=csv');
  assert.ok(await group.locator('a.conv-link').count() >= 1);
  await group.locator('button[data-answer]').click();
  await group.locator('textarea').fill(ANSWER);
  await shoot(page, 'owner-unanswered');
  await shootPhone(page, 'owner-unanswered');
  await group.locator('button[data-save]').click();
  await page.locator('#unanswered-status.ok').waitFor();
  await eventually('the group to leave the list', async () => (await group.count()) === 0);
  const answered = await ask('apakah ada layanan antar jemput bandara?');
  assert.match(answered, /taksi daring/, answered);
  await checkCsp();

  // ----- Usage: charts from the usage API (this run's conversations), the quota editor. -----
  await page.locator('.owner-nav a[data-page=usage]').click();
  await page.waitForURL(`${base}/console/usage`);
  await page.locator('#chart-messages').waitFor();
  await page.locator('#chart-rate').waitFor();
  assert.equal(await page.locator('#usage-unavailable').count(), 0);
  // This run's messages are counted on the tenant's today, whatever the browser's date.
  assert.notEqual((await page.locator('#kpi-in b').textContent()).trim(), '0');
  assert.notEqual((await page.locator('#kpi-conversations b').textContent()).trim(), '0');
  await shoot(page, 'owner-usage');
  await shootPhone(page, 'owner-usage');
  // A monthly message quota of 1 is already used up: the page says so after a reload.
  await page.locator('#quota-monthly_messages').fill('1');
  await page.locator('.quota-form button[type=submit]').click();
  await page.locator('#quota-status.ok').waitFor();
  await page.reload();
  await page.locator('#quota-banner.exceeded').waitFor();
  // Owners are also told once, in a notice on every console page until they dismiss it.
  const notice = page.locator('#notices .banner[data-kind="quota_exceeded"]');
  await notice.waitFor();
  await shoot(page, 'owner-usage-quota');
  await notice.locator('button.dismiss').click();
  await eventually('the notice dismissed', async () => (await notice.count()) === 0);
  await page.reload();
  await page.locator('#quota-banner.exceeded').waitFor();
  assert.equal(await notice.count(), 0, 'the notice comes once');
  // Back to unlimited.
  await page.locator('#quota-monthly_messages').fill('');
  await page.locator('.quota-form button[type=submit]').click();
  await page.locator('#quota-status.ok').waitFor();
  await page.reload();
  await page.locator('#chart-messages').waitFor();
  assert.equal(await page.locator('#quota-banner').count(), 0);
  await checkCsp();
  // The charts, the range switch, the CSV link and the warning banner, drawn from a response of
  // the usage API's shape served by the test, with numbers that do not depend on the day.
  await page.route('**/v1/console/usage?*', (route) => {
    const url = new URL(route.request().url());
    if (url.searchParams.get('format') === 'csv') return route.fulfill({ status: 200, contentType: 'text/csv', body: 'date,channel\n' });
    const from = new Date(`${url.searchParams.get('from')}T00:00:00`);
    const to = new Date(`${url.searchParams.get('to')}T00:00:00`);
    const days = [];
    for (let d = new Date(from), i = 0; d <= to; d.setDate(d.getDate() + 1), i += 1) {
      const date = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
      for (const [channel, share] of [['whatsapp', 1], ['webchat', 0.4]]) {
        const messagesIn = Math.round((40 + 25 * Math.sin(i / 3) + (i % 7) * 4) * share);
        days.push({
          date, channel, messages_in: messagesIn, messages_out: Math.round(messagesIn * 1.1), conversations: Math.round(messagesIn / 3),
          handoffs: Math.round(messagesIn / 20), answer_rate: 0.8 + 0.1 * Math.sin(i / 5), abstain_rate: 0.12 - 0.05 * Math.sin(i / 5),
          first_response_p50_ms: 2100, prompt_tokens: messagesIn * 900, completion_tokens: messagesIn * 120, cost: messagesIn * 0.0009,
        });
      }
    }
    const quota = { month: url.searchParams.get('to').slice(0, 7), messages_used: 8200, messages_limit: 10000, tokens_used: 5400000, tokens_limit: 8000000, warning: true, exceeded: false };
    return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ days, quota }) });
  });
  await page.reload();
  await page.locator('#chart-messages rect').first().waitFor();
  await page.locator('#quota-banner.warning').waitFor();
  assert.match(await page.locator('#usage-csv').getAttribute('href'), /^\/v1\/console\/usage\?from=\d{4}-\d{2}-\d{2}&to=\d{4}-\d{2}-\d{2}&format=csv$/);
  await page.locator('button[data-range="7"]').click();
  await page.locator('button[data-range="7"][aria-pressed="true"]').waitFor();
  await eventually('seven days of bars', async () => (await page.locator('#chart-messages rect').count()) === 14);
  await page.locator('button[data-range="30"]').click();
  await eventually('thirty days of bars', async () => (await page.locator('#chart-messages rect').count()) === 60);
  await shoot(page, 'owner-usage-charts');
  // The charts are redrawn for the phone's width (not just scaled down).
  await shootPhone(page, 'owner-usage-charts', () => eventually('charts redrawn for the phone', async () =>
    Number(await page.locator('#chart-messages').getAttribute('width')) < 390));
  await page.unroute('**/v1/console/usage?*');
  await checkCsp();

  // ----- Flows: a new flow with a mistake, its line and column, fixed, saved, listed. -----
  await page.locator('.owner-nav a[data-page=flows]').click();
  await page.waitForURL(`${base}/console/flows`);
  await page.locator('#flow-list [data-flow="cek-pesanan"]').waitFor();
  await page.locator('#flow-new').click();
  const starter = await page.locator('#flow-source').inputValue();
  assert.match(starter, /^name: new-flow$/m);
  // The starter is valid as it is.
  await page.locator('#flow-check').click();
  await page.locator('#flow-status.ok').waitFor();
  // A mistake on line 8 (`sya` for `say`); a description with markup, shown as text.
  const written = starter
    .replace('name: new-flow', 'name: titip-pesan')
    .replace(/^description: .*$/m, 'description: Titip pesan <img src=x onerror=alert(1)> untuk tim.');
  await page.locator('#flow-source').fill(written.replace('  - say:', '  - sya:'));
  await page.locator('#flow-save').click();
  const problem = page.locator('#flow-errors .flow-error').first();
  await problem.waitFor();
  assert.equal(await problem.getAttribute('data-line'), '8');
  assert.match(await problem.textContent(), /^baris 8, kolom \d+: \S/);
  await problem.click();
  await eventually('the caret on line 8', async () => /^baris 8, kolom \d+$/.test(await page.locator('#flow-caret').textContent()));
  assert.equal(await page.evaluate(() => {
    const area = document.getElementById('flow-source');
    return area.value.slice(0, area.selectionStart).split('\n').length;
  }), 8);
  assert.equal(await page.locator('#flow-list [data-flow="titip-pesan"]').count(), 0, 'nothing saved with a problem');
  await shoot(page, 'owner-flows-error');
  // Fixed and saved: listed, live, its description as text.
  await page.locator('#flow-source').fill(written);
  await page.locator('#flow-save').click();
  await page.locator('#flow-status.ok').waitFor();
  assert.equal(await page.locator('#flow-errors .flow-error').count(), 0);
  const saved = page.locator('#flow-list [data-flow="titip-pesan"]');
  await saved.waitFor();
  assert.match(await saved.locator('.flow-desc').textContent(), /<img src=x onerror=alert\(1\)>/);
  assert.equal(await page.locator('#flow-list img').count(), 0);
  assert.equal(await saved.getAttribute('aria-current'), 'true');
  // The page's head in view (the editor's focus scrolled the page).
  const toTop = () => page.evaluate(() => document.getElementById('owner-page').scrollTo(0, 0));
  await toTop();
  await shoot(page, 'owner-flows');
  await page.setViewportSize({ width: 375, height: 812 });
  await toTop();
  await page.screenshot({ path: path.join(SHOTS, 'owner-flows-phone.png') });
  const flowsOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(flowsOverflow <= 0, `the Flows page scrolls sideways on a phone by ${flowsOverflow}px`);
  await page.setViewportSize({ width: 1280, height: 800 });
  // A reload reads it back from the server; delete asks once more.
  await page.reload();
  await saved.click();
  await eventually('the saved flow in the editor', async () => /^name: titip-pesan$/m.test(await page.locator('#flow-source').inputValue()));
  await page.locator('#flow-delete').click();
  await page.locator('#flow-delete', { hasText: 'Yakin?' }).click();
  await eventually('the flow gone from the list', async () => (await page.locator('#flow-list [data-flow="titip-pesan"]').count()) === 0);
  await page.locator('#flow-list [data-flow="cek-pesanan"]').waitFor();
  await checkCsp();

  // ----- API keys: created (the secret shown once), used, revoked. -----
  await page.locator('.owner-nav a[data-page=keys]').click();
  await page.waitForURL(`${base}/console/keys`);
  await page.locator('#scope-knowledge').waitFor();
  await page.locator('#create-key').click();
  const key = (await page.locator('#new-key').textContent()).trim();
  assert.match(key, /^sapa_[0-9a-f]{8}_/);
  const prefix = key.split('_')[1];
  const row = page.locator(`#key-list tr[data-prefix="${prefix}"]`);
  await row.waitFor();
  const used = await fetch(`${base}/v1/admin/knowledge/documents`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(used.status, 200);
  await shoot(page, 'owner-keys');
  await shootPhone(page, 'owner-keys');
  // After a reload the secret is gone for good; the list shows only its prefix.
  await page.reload();
  await row.waitFor();
  assert.equal(await page.locator('#new-key').count(), 0);
  assert.ok(!(await page.content()).includes(key));
  await row.locator('button[data-revoke]').click();
  await row.locator('button[data-revoke]', { hasText: 'Yakin?' }).click();
  await row.locator('.tag', { hasText: 'Dicabut' }).waitFor();
  const refused = await fetch(`${base}/v1/admin/knowledge/documents`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(refused.status, 401);
  await checkCsp();

  // ----- An agent has no owner pages: no navigation, and an owner path shows the inbox. -----
  assert.equal(await cli(['staff', 'add', '--tenant', 'demo', '--email', 'agen@demo.local', '--role', 'agent', '--password-stdin'], `${PASSWORD}\n`), 0);
  const agentContext = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'id-ID' });
  const agentPage = await agentContext.newPage();
  agentPage.on('pageerror', (e) => pageErrors.push(e.message));
  await agentPage.goto(`${base}/console/login?tenant=demo`);
  await agentPage.fill('#email', 'agen@demo.local');
  await agentPage.fill('#password', PASSWORD);
  await agentPage.click('button[type=submit]');
  await agentPage.waitForURL(`${base}/console`);
  await agentPage.locator('.tabs button[data-queue=waiting]').waitFor();
  assert.equal(await agentPage.locator('.owner-nav').count(), 0);
  await agentPage.goto(`${base}/console/knowledge`);
  await agentPage.waitForURL(`${base}/console`);
  await agentPage.locator('.tabs button[data-queue=waiting]').waitFor();
  assert.equal(await agentPage.locator('#owner-page').count(), 0);
  await agentContext.close();

  // ----- English, one click away. -----
  await page.locator('.owner-nav a[data-page=bot]').click();
  await page.locator('#instructions').waitFor();
  await page.locator('#lang').click();
  await page.locator('.owner-nav a[data-page=knowledge]', { hasText: 'Knowledge' }).waitFor();
  await page.locator('#publish', { hasText: 'Publish' }).waitFor();
  await shoot(page, 'owner-bot-en');
  await page.locator('#lang').click();
  await page.locator('#publish', { hasText: 'Terbitkan' }).waitFor();
  await checkCsp();

  assert.deepEqual(csp, [], 'no CSP violations');
  assert.deepEqual(consoleErrors, [], 'no CSP errors in the console');
  assert.deepEqual(dialogs, [], 'no browser dialogs');
  assert.deepEqual(pageErrors, [], 'no page errors');
  await context.close();
});
