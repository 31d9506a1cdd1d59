/*! Sapa web chat widget. Embed with:
 *  <script src="https://HOST/widget.js" data-tenant="demo" async></script>
 * Plain JavaScript, no build step, no globals (one IIFE), styles isolated in a shadow root,
 * no inline code or styles (works under a strict Content-Security-Policy). Every message is
 * rendered as text with DOM APIs; links are built only for http(s) URLs.
 * Optional attributes: data-lang="id|en" (default: <html lang>, else Indonesian),
 * data-mode="page" (full-page chat, used by /chat/{tenant}). */
(function () {
  'use strict';

  var STRINGS = {
    id: {
      open: 'Buka chat',
      close: 'Tutup chat',
      online: 'Online',
      offline: 'Offline',
      connecting: 'Menyambungkan…',
      banner: 'Koneksi terputus. Pesan Anda disimpan dan akan dikirim otomatis saat tersambung kembali.',
      greeting: 'Halo! Ada yang bisa kami bantu?',
      placeholder: 'Tulis pesan…',
      input: 'Pesan Anda',
      send: 'Kirim pesan',
      log: 'Percakapan',
      you: 'Anda',
      agent: 'Admin',
      sending: 'Mengirim…',
      queued: 'Menunggu koneksi',
      waiting: 'Menunggu giliran',
      sent: 'Terkirim',
      read: 'Dibalas',
      failed: 'Gagal terkirim',
      tooLong: 'Pesan terlalu panjang: {n}/{max} karakter',
      rateLimited: 'Anda mengirim pesan terlalu cepat. Tunggu sebentar, pesan akan dikirim otomatis.',
      unavailable: 'Maaf, chat ini tidak tersedia di situs ini.',
      error: 'Maaf, pesan tidak dapat dikirim.',
      choices: 'Pilihan balasan',
      unread: '{n} pesan baru',
      typing: 'sedang mengetik'
    },
    en: {
      open: 'Open chat',
      close: 'Close chat',
      online: 'Online',
      offline: 'Offline',
      connecting: 'Connecting…',
      banner: 'Connection lost. Your messages are saved and will be sent automatically when we reconnect.',
      greeting: 'Hi! How can we help you?',
      placeholder: 'Write a message…',
      input: 'Your message',
      send: 'Send message',
      log: 'Conversation',
      you: 'You',
      agent: 'Agent',
      sending: 'Sending…',
      queued: 'Waiting for connection',
      waiting: 'Waiting',
      sent: 'Sent',
      read: 'Answered',
      failed: 'Not sent',
      tooLong: 'Message too long: {n}/{max} characters',
      rateLimited: 'You are sending messages too fast. Please wait a moment; they will be sent automatically.',
      unavailable: 'Sorry, this chat is not available on this website.',
      error: 'Sorry, the message could not be sent.',
      choices: 'Quick replies',
      unread: '{n} new messages',
      typing: 'is typing'
    }
  };
  var ICON_CHAT = 'M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z';
  var ICON_CLOSE = 'M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z';
  var ICON_SEND = 'M2.01 21 23 12 2.01 3 2 10l15 2-15 2z';
  var HISTORY_KEEP = 200;
  var URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

  var script = document.currentScript;
  if (!script || !script.getAttribute('data-tenant')) {
    script = document.querySelector('script[data-tenant][src*="widget.js"]');
  }
  if (!script) return;
  var tenant = script.getAttribute('data-tenant') || '';
  if (!/^[a-z0-9-]{1,40}$/.test(tenant)) {
    console.error('Sapa widget: data-tenant must be a tenant id (lowercase letters, digits, -)');
    return;
  }
  var apiBase = new URL(script.src, location.href).origin;
  var wsBase = apiBase.replace(/^http/, 'ws');
  var pageMode = script.getAttribute('data-mode') === 'page';
  var lang = /^en\b/i.test(script.getAttribute('data-lang') || document.documentElement.lang || '')
    ? 'en' : 'id';
  var T = STRINGS[lang];
  var prefix = 'sapa:' + apiBase + ':' + tenant + ':';
  var timeFormat = new Intl.DateTimeFormat(lang === 'en' ? 'en-GB' : 'id-ID', { hour: '2-digit', minute: '2-digit' });
  var dayFormat = new Intl.DateTimeFormat(lang === 'en' ? 'en-GB' : 'id-ID', { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });

  // ---- storage (localStorage may be unavailable: keep going in memory) ----
  var memory = {};
  function load(key, fallback) {
    try {
      var raw = localStorage.getItem(prefix + key);
      return raw == null ? fallback : JSON.parse(raw);
    } catch (e) {
      return key in memory ? memory[key] : fallback;
    }
  }
  function save(key, value) {
    memory[key] = value;
    try { localStorage.setItem(prefix + key, JSON.stringify(value)); } catch (e) { /* memory only */ }
  }
  function drop(key) {
    delete memory[key];
    try { localStorage.removeItem(prefix + key); } catch (e) { /* memory only */ }
  }

  var state = {
    config: null,
    name: '',
    max: 2000,
    session: load('session', null),
    history: load('history', []),
    outbox: load('outbox', []),
    lastId: 0,
    ws: null,
    online: false,
    connecting: false,
    attempt: 0,
    timer: 0,
    flushing: false,
    flushTimer: 0,
    blockedUntil: 0,
    unavailable: false,
    open: pageMode,
    unread: 0,
    typingTimer: 0,
    answered: {}
  };
  if (!Array.isArray(state.history)) state.history = [];
  if (!Array.isArray(state.outbox)) state.outbox = [];

  // ---- DOM helpers: text only, never HTML ----
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function attr(e, name, value) { e.setAttribute(name, value); return e; }
  function icon(d) {
    var ns = 'http://www.w3.org/2000/svg';
    var s = document.createElementNS(ns, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    s.setAttribute('focusable', 'false');
    var p = document.createElementNS(ns, 'path');
    p.setAttribute('d', d);
    s.appendChild(p);
    return s;
  }
  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return String(values[k]); });
  }
  function safeLink(raw) {
    var url;
    try { url = new URL(raw); } catch (e) { return null; }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    var a = el('a', null, raw);
    a.href = url.href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    return a;
  }
  /** Appends `text` to `parent` as text nodes, with http(s) URLs as safe links. */
  function linkify(text, parent) {
    var last = 0;
    var m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text))) {
      var raw = m[0].replace(/[.,;:!?)\]}]+$/, '');
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild(safeLink(raw) || document.createTextNode(raw));
      last = m.index + raw.length;
      URL_RE.lastIndex = last;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }
  /** Appends `text` with `**bold**` runs as <strong>, the rest through linkify. */
  function inline(text, parent) {
    var parts = text.split('**');
    if (parts.length < 3) { linkify(text, parent); return; }
    parts.forEach(function (part, i) {
      // Odd pieces are inside a closed pair; an unclosed last `**` stays literal.
      if (i % 2 === 1 && i < parts.length - 1 && part.trim()) {
        var strong = el('strong');
        linkify(part, strong);
        parent.appendChild(strong);
      } else {
        linkify((i % 2 === 1 ? '**' : '') + part, parent);
      }
    });
  }
  /**
   * Renders the bot's Markdown-lite as DOM nodes, never as HTML: headings bold, `- ` items
   * as bullets, table rows as `cell — cell`, `> ` lines as one blockquote. Same rules as the
   * server's WhatsApp and Telegram renderers (channels::markup).
   */
  function rich(text, parent) {
    var quote = null;
    var first = true;
    var afterBlock = false;
    text.split('\n').forEach(function (line) {
      var t = line.trim();
      if (/^\|[\s|:-]*$/.test(t) && t.length > 1) return;
      var q = /^>\s?(.*)$/.exec(t);
      if (q) {
        if (!quote) {
          quote = el('blockquote');
          parent.appendChild(quote);
        } else {
          quote.appendChild(document.createTextNode('\n'));
        }
        inline(q[1], quote);
        return;
      }
      // A blockquote ends its own line (and the blank line after it).
      if (quote) afterBlock = true;
      else if (!first && !afterBlock) parent.appendChild(document.createTextNode('\n'));
      quote = null;
      first = false;
      if (t) afterBlock = false;
      else if (afterBlock) return;
      var h = /^#{1,6}\s+(.*)$/.exec(t);
      if (h) { parent.appendChild(el('strong', null, h[1].split('**').join(''))); return; }
      if (/^\|.+/.test(t)) {
        var cells = t.replace(/^\||\|$/g, '').split('|').map(function (c) { return c.trim(); })
          .filter(function (c) { return c; });
        inline(cells.join(' — '), parent);
        return;
      }
      var li = /^[-*+]\s+(.*)$/.exec(t);
      if (li) { inline('• ' + li[1], parent); return; }
      inline(line, parent);
    });
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) {
      try { return crypto.randomUUID(); } catch (e) { /* insecure context */ }
    }
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }
  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    return (d.toDateString() === new Date().toDateString() ? timeFormat : dayFormat).format(d);
  }
  function length(text) { return Array.from(text.trim()).length; }

  // ---- the widget's DOM ----
  var host, root, wrap, launcher, badge, panel, title, avatar, presence, banner, scroller, greeting,
    log, streamItem, streamBubble, typing, notice, chips, form, input, counter, sendButton, closeButton;

  function build() {
    host = attr(el('div'), 'data-sapa-widget', tenant);
    root = host.attachShadow({ mode: 'open' });
    var link = el('link');
    link.rel = 'stylesheet';
    link.href = apiBase + '/widget.css';
    wrap = el('div', 'sapa' + (pageMode ? ' page open' : ''));
    wrap.hidden = true;
    link.onload = link.onerror = function () {
      wrap.hidden = false;
      scrollDown(true);
    };

    launcher = attr(el('button', 'launcher'), 'type', 'button');
    attr(launcher, 'aria-expanded', 'false');
    attr(launcher, 'aria-controls', 'sapa-panel');
    attr(launcher, 'aria-label', T.open);
    launcher.appendChild(icon(ICON_CHAT));
    badge = attr(el('span', 'badge'), 'aria-hidden', 'true');
    badge.hidden = true;
    launcher.appendChild(badge);

    panel = attr(el('section', 'panel'), 'id', 'sapa-panel');
    attr(panel, 'role', pageMode ? 'main' : 'dialog');
    attr(panel, 'aria-labelledby', 'sapa-title');
    panel.hidden = !pageMode;

    var header = el('header');
    avatar = attr(el('div', 'avatar'), 'aria-hidden', 'true');
    var heading = el('div', 'heading');
    title = attr(el('h2', 'title'), 'id', 'sapa-title');
    presence = el('p', 'presence', T.connecting);
    heading.appendChild(title);
    heading.appendChild(presence);
    closeButton = attr(el('button', 'close'), 'type', 'button');
    attr(closeButton, 'aria-label', T.close);
    closeButton.appendChild(icon(ICON_CLOSE));
    header.appendChild(avatar);
    header.appendChild(heading);
    header.appendChild(closeButton);

    banner = attr(el('div', 'banner', T.banner), 'role', 'status');
    banner.hidden = true;

    scroller = attr(el('div', 'scroll'), 'tabindex', '0');
    attr(scroller, 'aria-label', T.log);
    greeting = el('div', 'msg bot greeting');
    log = attr(el('ol', 'log'), 'role', 'log');
    attr(log, 'aria-live', 'polite');
    attr(log, 'aria-label', T.log);
    streamItem = attr(el('div', 'msg bot streaming'), 'aria-hidden', 'true');
    streamBubble = el('div', 'bubble');
    streamItem.appendChild(streamBubble);
    streamItem.hidden = true;
    typing = el('div', 'typing');
    typing.appendChild(el('span'));
    typing.appendChild(el('span'));
    typing.appendChild(el('span'));
    typing.appendChild(el('b', 'sr', T.typing));
    typing.hidden = true;
    scroller.appendChild(greeting);
    scroller.appendChild(log);
    scroller.appendChild(streamItem);
    scroller.appendChild(typing);

    notice = attr(el('div', 'notice'), 'role', 'alert');
    notice.hidden = true;
    chips = attr(el('div', 'chips'), 'role', 'group');
    attr(chips, 'aria-label', T.choices);
    chips.hidden = true;

    form = el('form', 'composer');
    attr(form, 'novalidate', '');
    var field = el('div', 'field');
    var label = attr(el('label', 'sr', T.input), 'for', 'sapa-input');
    input = attr(el('textarea'), 'id', 'sapa-input');
    input.rows = 1;
    input.placeholder = T.placeholder;
    attr(input, 'aria-describedby', 'sapa-counter');
    attr(input, 'enterkeyhint', 'send');
    counter = attr(el('span', 'counter'), 'id', 'sapa-counter');
    field.appendChild(label);
    field.appendChild(input);
    field.appendChild(counter);
    sendButton = attr(el('button', 'send'), 'type', 'submit');
    attr(sendButton, 'aria-label', T.send);
    sendButton.appendChild(icon(ICON_SEND));
    form.appendChild(field);
    form.appendChild(sendButton);

    panel.appendChild(header);
    panel.appendChild(banner);
    panel.appendChild(scroller);
    panel.appendChild(notice);
    panel.appendChild(chips);
    panel.appendChild(form);
    wrap.appendChild(launcher);
    wrap.appendChild(panel);
    root.appendChild(link);
    root.appendChild(wrap);
    document.body.appendChild(host);

    launcher.addEventListener('click', function () { setOpen(!state.open); });
    closeButton.addEventListener('click', function () { setOpen(false); });
    panel.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && !pageMode) { e.preventDefault(); setOpen(false); }
    });
    input.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit();
      }
    });
    input.addEventListener('input', updateComposer);
    form.addEventListener('submit', function (e) { e.preventDefault(); submit(); });
    applyName(T.log);
    setGreeting(T.greeting);
    updateComposer();
  }

  function setOpen(open) {
    if (pageMode) return;
    state.open = open;
    panel.hidden = !open;
    wrap.classList.toggle('open', open);
    attr(launcher, 'aria-expanded', String(open));
    if (open) {
      state.unread = 0;
      updateBadge();
      scrollDown(true);
      (state.unavailable ? closeButton : input).focus();
      connect();
    } else {
      launcher.focus();
    }
  }

  function updateBadge() {
    badge.hidden = state.unread === 0;
    badge.textContent = String(state.unread);
    var label = state.config ? T.open + ' — ' + state.name : T.open;
    attr(launcher, 'aria-label', state.unread ? label + ' (' + fill(T.unread, { n: state.unread }) + ')' : label);
  }

  function applyName(name) {
    state.name = name;
    title.textContent = name;
    avatar.textContent = Array.from(name.trim())[0] || '?';
    attr(panel, 'aria-label', name);
    updateBadge();
  }

  function setGreeting(text) {
    greeting.textContent = '';
    var bubble = el('div', 'bubble');
    linkify(text, bubble);
    greeting.appendChild(bubble);
  }

  function applyConfig(cfg) {
    state.config = cfg;
    if (cfg.tenant && cfg.tenant.name) applyName(String(cfg.tenant.name));
    if (typeof cfg.greeting === 'string' && cfg.greeting) setGreeting(cfg.greeting);
    if (cfg.max_message_chars > 0) state.max = cfg.max_message_chars;
    var c = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(cfg.color || '');
    if (c) {
      var hex = c[1].length === 3 ? c[1].replace(/./g, '$&$&') : c[1];
      var n = parseInt(hex, 16);
      var yiq = ((n >> 16) * 299 + ((n >> 8) & 255) * 587 + (n & 255) * 114) / 1000;
      host.style.setProperty('--sapa-accent', '#' + hex);
      host.style.setProperty('--sapa-on-accent', yiq >= 160 ? '#111111' : '#ffffff');
    }
    updateComposer();
  }

  function setOnline(online) {
    state.online = online;
    wrap.classList.toggle('offline', !online);
    presence.textContent = online ? T.online : T.offline;
    clearTimeout(state.bannerTimer);
    if (online || state.unavailable) {
      banner.hidden = true;
    } else if (banner.hidden) {
      // A reconnect within a second or two needs no banner.
      state.bannerTimer = setTimeout(function () { banner.hidden = state.online || state.unavailable; }, 1500);
    }
    if (!online) {
      hideTyping();
      clearStream();
      state.outbox.forEach(function (item) { setPendingState(item.cid, 'queued'); });
    }
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }
  function hideNotice(text) {
    if (!text || notice.textContent === text) notice.hidden = true;
  }

  function makeUnavailable() {
    state.unavailable = true;
    if (state.ws) state.ws.close();
    clearTimeout(state.timer);
    presence.hidden = true;
    greeting.hidden = true;
    banner.hidden = true;
    input.disabled = true;
    showNotice(T.unavailable);
    updateComposer();
    console.warn('Sapa widget: this page (' + location.origin + ') may not use the chat of tenant "' +
      tenant + '"; add the origin to the tenant\'s allowed_origins.');
  }

  // ---- composer ----
  function updateComposer() {
    var n = length(input.value);
    var over = n > state.max;
    counter.textContent = over ? fill(T.tooLong, { n: n, max: state.max })
      : n > state.max * 0.8 ? n + '/' + state.max : '';
    counter.classList.toggle('over', over);
    attr(input, 'aria-invalid', String(over));
    sendButton.disabled = over || n === 0 || state.unavailable;
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 140) + 'px';
  }

  function submit() {
    var text = input.value.trim();
    if (!text || length(text) > state.max || state.unavailable) return;
    input.value = '';
    updateComposer();
    send(text);
  }

  function send(text) {
    var item = { cid: uuid(), text: text, at: new Date().toISOString() };
    state.outbox.push(item);
    save('outbox', state.outbox);
    renderPending(item);
    clearChips();
    scrollDown(true);
    if (state.session) flush(); else connect();
  }

  // ---- rendering ----
  function authorLabel(author) {
    return author === 'customer' ? T.you : author === 'agent' ? T.agent : state.name;
  }

  function item(author, text, iso) {
    var li = el('li', 'msg ' + author);
    li.appendChild(el('span', 'sr', authorLabel(author) + ': '));
    var bubble = el('div', 'bubble');
    if (author === 'customer') linkify(text, bubble); else rich(text, bubble);
    li.appendChild(bubble);
    var meta = el('div', 'meta');
    // A person wrote this: say so where the customer looks (screen readers get the label above).
    if (author === 'agent') meta.appendChild(attr(el('span', 'who', T.agent + ' · '), 'aria-hidden', 'true'));
    var time = el('time', null, formatTime(iso));
    time.dateTime = iso;
    meta.appendChild(time);
    if (author === 'customer') meta.appendChild(attr(el('span', 'state'), 'aria-hidden', 'true'));
    li.appendChild(meta);
    return li;
  }

  function setItemState(li, key) {
    var span = li.querySelector('.state');
    if (span) span.textContent = T[key];
    li.classList.toggle('pending', key === 'sending' || key === 'queued' || key === 'waiting');
    li.classList.toggle('failed', key === 'failed');
  }

  function byCid(cid, stored) {
    return log.querySelector('li[data-cid="' + String(cid).replace(/[^\w.:-]/g, '') + '"]' +
      (stored ? '[data-id]' : ':not([data-id])'));
  }
  function pendingItem(cid) { return byCid(cid, false); }

  /** The server has the message: drop the local copy if the stored one is shown. */
  function settle(cid) {
    var pending = pendingItem(cid);
    if (!pending) return;
    if (byCid(cid, true)) log.removeChild(pending);
    else setItemState(pending, 'sent');
  }

  function setPendingState(cid, key) {
    var li = pendingItem(cid);
    if (li && li.classList.contains('pending')) setItemState(li, key);
  }

  function renderPending(entry) {
    var li = item('customer', entry.text, entry.at);
    li.setAttribute('data-cid', entry.cid);
    setItemState(li, Date.now() < state.blockedUntil ? 'waiting' : state.online ? 'sending' : 'queued');
    log.appendChild(li);
  }

  /** Inserts `li` in id order, before messages still waiting to be sent. */
  function insert(li, id) {
    var nodes = log.children;
    for (var i = 0; i < nodes.length; i++) {
      var other = nodes[i];
      var otherId = Number(other.getAttribute('data-id'));
      if (other.classList.contains('pending') || other.classList.contains('failed') || otherId > id) {
        log.insertBefore(li, other);
        return;
      }
    }
    log.appendChild(li);
  }

  function removeFromOutbox(cid) {
    var before = state.outbox.length;
    state.outbox = state.outbox.filter(function (o) { return o.cid !== cid; });
    if (state.outbox.length !== before) save('outbox', state.outbox);
  }

  /** Shows one stored message (from history, catch-up or the socket), once. */
  function receive(m, live) {
    if (!m || typeof m.id !== 'number' || typeof m.text !== 'string') return;
    var author = m.author === 'customer' || m.author === 'agent' ? m.author : 'bot';
    var cid = author === 'customer' && typeof m.client_message_id === 'string' ? m.client_message_id : '';
    if (cid) {
      removeFromOutbox(cid);
      var pending = pendingItem(cid);
      if (pending) log.removeChild(pending);
    }
    if (log.querySelector('li[data-id="' + m.id + '"]')) return;
    var stick = atEnd() || author === 'customer';
    var li = item(author, m.text, m.created_at);
    li.setAttribute('data-id', String(m.id));
    if (author === 'customer') {
      if (cid) li.setAttribute('data-cid', cid);
      setItemState(li, state.answered[cid] ? 'read' : 'sent');
    } else {
      (m.in_reply_to || []).forEach(function (answeredCid) {
        state.answered[answeredCid] = true;
        var answered = byCid(answeredCid, true);
        if (answered) setItemState(answered, 'read');
      });
      clearStream();
      hideTyping();
      if (live && !state.open) {
        state.unread++;
        updateBadge();
      }
    }
    insert(li, m.id);
    if (m.id > state.lastId) {
      state.lastId = m.id;
      renderChips(author !== 'customer' ? m.choices : null);
    }
    if (live) {
      state.history.push(m);
      if (state.history.length > HISTORY_KEEP) state.history = state.history.slice(-HISTORY_KEEP);
      save('history', state.history);
    }
    scrollDown(stick);
  }

  function renderChips(choices) {
    clearChips();
    if (!choices || !choices.length) return;
    choices.forEach(function (choice) {
      var b = attr(el('button', 'chip', String(choice)), 'type', 'button');
      b.addEventListener('click', function () { if (!state.unavailable) send(String(choice)); });
      chips.appendChild(b);
    });
    chips.hidden = false;
  }
  function clearChips() {
    chips.textContent = '';
    chips.hidden = true;
  }

  function showTyping() {
    var stick = atEnd();
    typing.hidden = false;
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(hideTyping, 60000);
    scrollDown(stick);
  }
  function hideTyping() {
    clearTimeout(state.typingTimer);
    typing.hidden = true;
  }
  function appendStream(text) {
    var stick = atEnd();
    hideTyping();
    streamItem.hidden = false;
    streamBubble.textContent += text;
    scrollDown(stick);
  }
  function clearStream() {
    streamBubble.textContent = '';
    streamItem.hidden = true;
  }

  /** Whether the reader is at (or near) the end of the conversation: measure before adding. */
  function atEnd() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }
  /** Scrolls to the end if `stick` (the reader was there, or it is their own message). */
  function scrollDown(stick) {
    if (stick) scroller.scrollTop = scroller.scrollHeight;
  }

  // ---- network ----
  function api(method, path, body, token) {
    var headers = {};
    if (body) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = 'Bearer ' + token;
    return fetch(apiBase + path, {
      method: method,
      headers: headers,
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'omit',
      cache: 'no-store'
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
        return { status: res.status, data: data || {}, retryAfter: Number(res.headers.get('Retry-After')) || 0 };
      });
    });
  }

  /** Exponential backoff with jitter: half the capped delay, plus a random share of the rest. */
  function reconnectLater(minimumMs) {
    clearTimeout(state.timer);
    if (state.unavailable) return;
    var cap = Math.min(30000, 500 * Math.pow(2, state.attempt));
    state.attempt++;
    var delay = Math.max(minimumMs || 0, cap / 2 + Math.random() * (cap / 2));
    state.timer = setTimeout(function () { state.timer = 0; connect(); }, delay);
  }

  function connectNow() {
    state.attempt = 0;
    clearTimeout(state.timer);
    state.timer = 0;
    connect();
  }

  async function loadConfig() {
    var r = await api('GET', '/v1/webchat/config?tenant=' + encodeURIComponent(tenant));
    if (r.status === 404) { makeUnavailable(); return false; }
    if (r.status !== 200) throw new Error('config: HTTP ' + r.status);
    applyConfig(r.data);
    if (!r.data.origin_allowed) { makeUnavailable(); return false; }
    return true;
  }

  async function createSession() {
    var r = await api('POST', '/v1/webchat/sessions', { tenant: tenant, locale: lang });
    if (r.status === 201) {
      state.session = { token: r.data.session_token, conversation: r.data.conversation_id };
      save('session', state.session);
      return true;
    }
    if (r.status === 403 || r.status === 404) { makeUnavailable(); return false; }
    if (r.status === 429) { showNotice(T.rateLimited); reconnectLater(r.retryAfter * 1000); return false; }
    throw new Error('session: HTTP ' + r.status);
  }

  function resetSession() {
    state.session = null;
    state.history = [];
    state.answered = {};
    state.lastId = 0;
    drop('session');
    drop('history');
    Array.prototype.slice.call(log.querySelectorAll('li[data-id]')).forEach(function (li) { log.removeChild(li); });
    clearChips();
  }

  /** Loads what was missed over HTTP (which also reveals 401/403/429, which a WebSocket
   *  handshake hides), then opens the socket with replay after the last message seen. */
  async function connect() {
    if (state.unavailable || state.connecting || (state.ws && state.ws.readyState <= 1)) return;
    state.connecting = true;
    try {
      if (!state.config && !(await loadConfig())) return;
      if (!state.session && !(await createSession())) return;
      var after = state.lastId;
      var r = await api('GET', '/v1/webchat/messages?after=' + after, null, state.session.token);
      if (r.status === 401) { resetSession(); reconnectLater(); return; }
      if (r.status === 403) { makeUnavailable(); return; }
      if (r.status === 429) { reconnectLater(r.retryAfter * 1000); return; }
      if (r.status !== 200) throw new Error('messages: HTTP ' + r.status);
      (r.data.messages || []).forEach(function (m) { receive(m, true); });
      openSocket();
    } catch (e) {
      setOnline(false);
      reconnectLater();
    } finally {
      state.connecting = false;
    }
  }

  function openSocket() {
    var ws = new WebSocket(wsBase + '/v1/webchat/ws?token=' + encodeURIComponent(state.session.token) +
      '&after=' + state.lastId);
    state.ws = ws;
    ws.onopen = function () {
      state.attempt = 0;
      setOnline(true);
      flush();
    };
    ws.onmessage = function (e) {
      var event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      if (event.type === 'message') receive(event.message, true);
      else if (event.type === 'typing') showTyping();
      else if (event.type === 'delta' && typeof event.text === 'string') appendStream(event.text);
      else if (event.type === 'stream_discarded') clearStream();
    };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      state.ws = null;
      setOnline(false);
      reconnectLater();
    };
  }

  /** Sends the outbox in order. Each message keeps its client_message_id across retries, so
   *  the server stores it once however often it is sent. */
  async function flush() {
    clearTimeout(state.flushTimer);
    if (state.flushing || !state.session || state.unavailable) return;
    var wait = state.blockedUntil - Date.now();
    if (wait > 0) { state.flushTimer = setTimeout(flush, wait); return; }
    state.flushing = true;
    try {
      while (state.outbox.length) {
        var entry = state.outbox[0];
        setPendingState(entry.cid, 'sending');
        var r;
        try {
          r = await api('POST', '/v1/webchat/messages', { client_message_id: entry.cid, text: entry.text }, state.session.token);
        } catch (e) {
          setPendingState(entry.cid, 'queued');
          if (state.ws) state.ws.close();
          else if (!state.timer && !state.connecting) reconnectLater();
          return;
        }
        if (r.status === 202) {
          removeFromOutbox(entry.cid);
          hideNotice(T.rateLimited);
          if (r.data.message) receive(r.data.message, true);
          else settle(entry.cid);
        } else if (r.status === 429) {
          state.blockedUntil = Date.now() + Math.max(1, r.retryAfter) * 1000;
          state.outbox.forEach(function (o) { setPendingState(o.cid, 'waiting'); });
          showNotice(T.rateLimited);
          state.flushTimer = setTimeout(flush, state.blockedUntil - Date.now() + 50);
          return;
        } else if (r.status === 401) {
          resetSession();
          connectNow();
          return;
        } else if (r.status === 403) {
          makeUnavailable();
          return;
        } else if (r.status >= 500) {
          // 503 overloaded says when to come back (Retry-After); the jitter spreads retries.
          setPendingState(entry.cid, 'queued');
          state.flushTimer = setTimeout(flush, Math.max(2000, r.retryAfter * 1000) + Math.random() * 3000);
          return;
        } else {
          // 400/413/422: this message can never be accepted; keep it visible as failed.
          removeFromOutbox(entry.cid);
          var li = pendingItem(entry.cid);
          if (li) setItemState(li, 'failed');
          showNotice(T.error + (r.data.error && r.data.error.message ? ' (' + r.data.error.message + ')' : ''));
        }
      }
    } finally {
      state.flushing = false;
    }
  }

  // ---- start ----
  function init() {
    if (document.querySelector('[data-sapa-widget="' + tenant + '"]')) return;
    build();
    state.history.sort(function (a, b) { return a.id - b.id; });
    state.history.forEach(function (m) {
      (m.in_reply_to || []).forEach(function (cid) { state.answered[cid] = true; });
    });
    state.history.forEach(function (m) { receive(m, false); });
    state.outbox.forEach(renderPending);
    window.addEventListener('online', connectNow);
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState === 'visible' && !state.online) connectNow();
    });
    // Talk to the server only when there is a conversation to continue or the chat is shown,
    // so visitors who never open the widget do not create sessions.
    if (pageMode || state.session || state.outbox.length) {
      connect();
    } else {
      loadConfig().catch(function () { /* retried when the panel opens */ });
    }
  }

  if (document.body) init();
  else document.addEventListener('DOMContentLoaded', init);
})();
