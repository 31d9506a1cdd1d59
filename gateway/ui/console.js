// Sapa agent console: plain JavaScript, no build step, served by the binary under a strict CSP
// (no inline script). Every string from the server is rendered with textContent, never as HTML.
// Views by path: /console/login, /console/set-password#token=…, /console (queues + chat), and
// for owners /console/{bot,knowledge,unanswered,flows,usage,keys} (drawn by owner.js).
'use strict';

(() => {
  const T = {
    id: {
      login: 'Masuk ke konsol', loginHint: 'Untuk pemilik dan agen.', tenant: 'Toko (slug)', email: 'Email',
      password: 'Kata sandi', signIn: 'Masuk', code: 'Kode verifikasi', codeHint: 'Kami mengirim kode 6 digit ke WhatsApp atau Telegram Anda.',
      verify: 'Verifikasi', setPassword: 'Buat kata sandi', setHint: 'Minimal 10 karakter.', again: 'Ulangi kata sandi',
      save: 'Simpan', saved: 'Kata sandi tersimpan. Silakan masuk.', toLogin: 'Ke halaman masuk', mismatch: 'Kata sandi tidak sama.',
      waiting: 'Menunggu', mine: 'Milik saya', open: 'Terbuka', visitor: 'Pengunjung web',
      customer_asked: 'pelanggan minta admin', repeated_no_answer: 'bot tidak menemukan jawaban', answer_failed: 'bot gagal menjawab', model_asked: 'bot meneruskan', tenant_keyword: 'kata kunci toko', resolved: 'Selesai', empty: 'Tidak ada percakapan di sini.',
      addGolden: 'Jadikan pertanyaan uji', goldenAdded: 'Masuk pertanyaan uji', goldenNoAnswer: 'Bot belum bisa menjawab ini; jawab lewat halaman Tak terjawab.',
      pick: 'Pilih percakapan untuk membalas.', claim: 'Ambil alih', handback: 'Kembalikan ke bot', resolve: 'Selesaikan',
      send: 'Kirim', note: 'Catatan internal', placeholder: 'Tulis balasan…', notePlaceholder: 'Catatan untuk tim (tidak dikirim)…',
      claimFirst: 'Ambil alih percakapan ini untuk membalas.', logout: 'Keluar', online: 'Online', away: 'Sedang pergi', back: 'Kembali', waitingFor: 'menunggu',
      notice_quota_warning: 'Pemakaian bulan ini sudah mencapai 80% kuota.', notice_quota_exceeded: 'Kuota bulan ini habis: bot kini menjawab dengan kutipan dokumen dan menawarkan admin, tanpa model.', seeUsage: 'Lihat pemakaian', dismiss: 'Tutup',
      advise2fa: 'Akun Anda belum memakai verifikasi dua langkah. Minta pemilik menambahkan nomor WhatsApp Anda.',
      flowNow: 'Alur', tags: 'Label', followUps: 'Tindak lanjut', followUpsOff: 'Pelanggan minta berhenti', reason: 'Alasan', customer: 'Pelanggan', bot: 'Bot', agent: 'Agen', noteAuthor: 'Catatan', failed: 'Gagal: ',
      window: 'Jendela WhatsApp', closed: 'tertutup', left: 'tersisa', assigned: 'Ditangani', you: 'Anda',
      bell: 'Notifikasi', bellOn: 'Notifikasi aktif', bellBlocked: 'Notifikasi diblokir browser', newWaiting: 'Chat baru menunggu agen',
      live: 'Langsung', offline: 'Menyambung ulang…',
      more: 'Tombol & lampiran', choices: 'Tombol balasan cepat (maks. 3, pisahkan dengan koma)', attachment: 'Lampiran (URL https)',
      image: 'Gambar', document: 'Dokumen', filename: 'Nama file (dokumen)', cannedHint: 'Ketik / untuk balasan tersimpan',
      windowClosedHint: 'Pelanggan terakhir menulis lebih dari 24 jam lalu. WhatsApp hanya mengizinkan pesan template sampai pelanggan membalas.',
      details: 'Detail pelanggan', info: 'Info', channels: 'Kanal', previous: 'Percakapan sebelumnya', noPrevious: 'Belum ada percakapan lain.',
      state_bot: 'Dijawab bot', state_waiting_human: 'Menunggu agen', state_human: 'Ditangani agen', state_closed: 'Selesai',
      download: 'Unduh', photo: 'Foto dari pelanggan', waitingSince: 'Menunggu', status: 'Status', pickDetails: 'Detail pelanggan tampil di sini.',
      template: 'Template', sendTemplate: 'Kirim template', noTemplates: 'Belum ada template agen. Tambahkan [[tenants.<toko>.agent_templates]] di konfigurasi.',
      nav_inbox: 'Percakapan', nav_bot: 'Bot', nav_knowledge: 'Pengetahuan', nav_unanswered: 'Tak terjawab', nav_flows: 'Alur', nav_usage: 'Pemakaian', nav_keys: 'Kunci API',
      ownerPages: 'Halaman pemilik',
    },
    en: {
      login: 'Sign in to the console', loginHint: 'For owners and agents.', tenant: 'Business (slug)', email: 'Email',
      password: 'Password', signIn: 'Sign in', code: 'Verification code', codeHint: 'We sent a 6-digit code to your WhatsApp or Telegram.',
      verify: 'Verify', setPassword: 'Set your password', setHint: 'At least 10 characters.', again: 'Repeat the password',
      save: 'Save', saved: 'Password saved. Please sign in.', toLogin: 'Go to sign in', mismatch: 'The passwords differ.',
      waiting: 'Waiting', mine: 'Mine', open: 'Open', visitor: 'Web visitor',
      customer_asked: 'customer asked for a person', repeated_no_answer: 'the bot found no answer', answer_failed: 'answering failed', model_asked: 'the bot handed off', tenant_keyword: 'a handoff keyword', resolved: 'Resolved', empty: 'No conversations here.',
      addGolden: 'Add as a test question', goldenAdded: 'Added to the test questions', goldenNoAnswer: 'The bot cannot answer this yet; answer it on the Unanswered page.',
      pick: 'Pick a conversation to reply.', claim: 'Claim', handback: 'Hand back to bot', resolve: 'Resolve',
      send: 'Send', note: 'Internal note', placeholder: 'Write a reply…', notePlaceholder: 'Note for the team (not sent)…',
      claimFirst: 'Claim this conversation to reply.', logout: 'Sign out', online: 'Online', away: 'Away', back: 'Back', waitingFor: 'waiting',
      notice_quota_warning: 'This month\'s usage has reached 80% of the quota.', notice_quota_exceeded: 'This month\'s quota is used up: the bot now answers with document quotes and offers a person, without the model.', seeUsage: 'See usage', dismiss: 'Dismiss',
      advise2fa: 'Your account has no second factor. Ask an owner to add your WhatsApp number.',
      flowNow: 'Flow', tags: 'Tags', followUps: 'Follow-ups', followUpsOff: 'Customer opted out', reason: 'Reason', customer: 'Customer', bot: 'Bot', agent: 'Agent', noteAuthor: 'Note', failed: 'Failed: ',
      window: 'WhatsApp window', closed: 'closed', left: 'left', assigned: 'Assigned', you: 'you',
      bell: 'Notifications', bellOn: 'Notifications on', bellBlocked: 'Notifications blocked by the browser', newWaiting: 'New chat waiting for an agent',
      live: 'Live', offline: 'Reconnecting…',
      more: 'Buttons & attachment', choices: 'Quick reply buttons (up to 3, comma separated)', attachment: 'Attachment (https URL)',
      image: 'Image', document: 'Document', filename: 'File name (documents)', cannedHint: 'Type / for saved replies',
      windowClosedHint: 'The customer last wrote over 24 hours ago. WhatsApp allows only template messages until they reply.',
      details: 'Customer details', info: 'Info', channels: 'Channels', previous: 'Earlier conversations', noPrevious: 'No other conversations yet.',
      state_bot: 'Bot answering', state_waiting_human: 'Waiting for an agent', state_human: 'With an agent', state_closed: 'Resolved',
      download: 'Download', photo: 'Photo from the customer', waitingSince: 'Waiting', status: 'Status', pickDetails: 'Customer details show here.',
      template: 'Template', sendTemplate: 'Send template', noTemplates: 'No agent templates yet. Add [[tenants.<shop>.agent_templates]] to the config.',
      nav_inbox: 'Inbox', nav_bot: 'Bot', nav_knowledge: 'Knowledge', nav_unanswered: 'Unanswered', nav_flows: 'Flows', nav_usage: 'Usage', nav_keys: 'API keys',
      ownerPages: 'Owner pages',
    },
  };
  // Indonesian unless the agent chose English (header switch) or the browser speaks English.
  const chosen = localStorage.getItem('sapa.lang');
  let lang = chosen === 'id' || chosen === 'en' ? chosen : ((navigator.language || 'id').toLowerCase().startsWith('en') ? 'en' : 'id');
  const t = (key) => T[lang][key] || T.id[key] || key;
  document.documentElement.lang = lang;

  /** A line icon (SVG built with DOM calls, so no markup strings and no inline styles). */
  function icon(paths) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', width: '18', height: '18', fill: 'none', stroke: 'currentColor', 'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true' })) svg.setAttribute(k, v);
    for (const d of paths) {
      const path = document.createElementNS(ns, 'path');
      path.setAttribute('d', d);
      svg.append(path);
    }
    return svg;
  }
  const BELL = ['M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9', 'M13.73 21a2 2 0 0 1-3.46 0'];
  const CLIP = ['M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48'];

  const app = document.getElementById('app');
  const state = {
    me: null, queue: 'waiting', items: [], selected: null, conversation: null, timer: null,
    // Live updates: the event stream, its debounce timer, and the last state seen per chat.
    events: null, live: false, pending: null, known: new Map(),
    // The composer: the tenant's canned replies and templates, and when typing was last shown.
    canned: [], templates: [], lastTyping: 0,
  };
  /** Live events refetch at once; this slow poll only covers a broken stream. */
  const FALLBACK_POLL_MS = 30000;

  /** An element with attributes and children (strings become text nodes, never HTML). */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function mount(...nodes) {
    app.className = '';
    app.replaceChildren(...nodes);
  }

  const csrf = () => sessionStorage.getItem('sapa.csrf') || '';

  async function api(method, url, body) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET') headers['x-csrf-token'] = csrf();
    const res = await fetch(url, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (res.status === 401 && !url.startsWith('/v1/console/login') && url !== '/v1/console/password') {
      location.assign('/console/login');
      throw new Error('not logged in');
    }
    if (!res.ok) {
      const err = new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function brand() {
    return h('div', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, 'S'), 'Sapa');
  }

  // ----- Sign in ------------------------------------------------------------------------------
  function loginView() {
    const error = h('div', { class: 'error', role: 'alert' });
    const params = new URLSearchParams(location.search);
    const tenant = h('input', { name: 'tenant', autocomplete: 'organization', required: true, value: params.get('tenant') || localStorage.getItem('sapa.tenant') || '' });
    const email = h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true });
    const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const submit = h('button', { class: 'primary', type: 'submit' }, t('signIn'));
    const form = h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        submit.disabled = true;
        try {
          const data = await api('POST', '/v1/console/login', { tenant: tenant.value.trim(), email: email.value.trim(), password: password.value });
          localStorage.setItem('sapa.tenant', tenant.value.trim());
          if (data.otp_required) codeView(data.challenge_id);
          else signedIn(data);
        } catch (err) {
          error.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('label', { for: 'tenant' }, t('tenant')), Object.assign(tenant, { id: 'tenant' }),
    h('label', { for: 'email' }, t('email')), Object.assign(email, { id: 'email' }),
    h('label', { for: 'password' }, t('password')), Object.assign(password, { id: 'password' }),
    submit, error);
    mount(h('main', { class: 'auth' }, h('div', { class: 'card' }, brand(), h('h1', {}, t('login')), h('p', {}, t('loginHint')), form)));
    (tenant.value ? email : tenant).focus();
  }

  function codeView(challengeId) {
    const error = h('div', { class: 'error', role: 'alert' });
    const code = h('input', { id: 'code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6', required: true });
    const submit = h('button', { class: 'primary', type: 'submit' }, t('verify'));
    const form = h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        submit.disabled = true;
        try {
          signedIn(await api('POST', '/v1/console/login/otp', { challenge_id: challengeId, code: code.value.trim() }));
        } catch (err) {
          const left = err.data && err.data.error && err.data.error.attempts_left;
          error.textContent = left !== undefined ? `${err.message} (${left})` : err.message;
        } finally {
          submit.disabled = false;
        }
      },
    }, h('label', { for: 'code' }, t('code')), code, submit, error);
    mount(h('main', { class: 'auth' }, h('div', { class: 'card' }, brand(), h('h1', {}, t('code')), h('p', {}, t('codeHint')), form)));
    code.focus();
  }

  function signedIn(data) {
    sessionStorage.setItem('sapa.csrf', data.csrf_token);
    location.assign('/console');
  }

  function setPasswordView() {
    const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
    const error = h('div', { class: 'error', role: 'alert' });
    const one = h('input', { id: 'password', type: 'password', autocomplete: 'new-password', minlength: '10', required: true });
    const two = h('input', { id: 'again', type: 'password', autocomplete: 'new-password', minlength: '10', required: true });
    const submit = h('button', { class: 'primary', type: 'submit' }, t('save'));
    const card = h('div', { class: 'card' }, brand(), h('h1', {}, t('setPassword')), h('p', {}, t('setHint')));
    const form = h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        if (one.value !== two.value) { error.textContent = t('mismatch'); return; }
        submit.disabled = true;
        try {
          const data = await api('POST', '/v1/console/password', { token, password: one.value });
          history.replaceState(null, '', '/console/set-password');
          card.replaceChildren(brand(), h('h1', {}, t('saved')),
            h('p', {}, data.staff.email), h('a', { href: `/console/login?tenant=${encodeURIComponent(data.staff.tenant)}` }, t('toLogin')));
        } catch (err) {
          error.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    }, h('label', { for: 'password' }, t('password')), one, h('label', { for: 'again' }, t('again')), two, submit, error);
    card.append(form);
    mount(h('main', { class: 'auth' }, card));
    one.focus();
  }

  // ----- The console --------------------------------------------------------------------------
  function since(iso) {
    if (!iso) return '';
    const minutes = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 60000));
    if (minutes < 60) return `${minutes}m`;
    const hours = Math.floor(minutes / 60);
    return hours < 48 ? `${hours}h ${minutes % 60}m` : `${Math.floor(hours / 24)}d`;
  }

  /** Time left in WhatsApp's 24-hour customer service window. */
  function windowLeft(item) {
    if (item.channel !== 'whatsapp' || !item.last_customer_message_at) return null;
    const left = Date.parse(item.last_customer_message_at) + 24 * 3600 * 1000 - Date.now();
    if (left <= 0) return `${t('window')}: ${t('closed')}`;
    const hours = Math.floor(left / 3600000);
    return `${t('window')}: ${hours}h ${Math.floor((left % 3600000) / 60000)}m ${t('left')}`;
  }

  /** The customer's name; a web chat visitor has none, only a session id. */
  function customerName(item) {
    const name = String(item.customer || '');
    if (item.channel === 'webchat' && /^[0-9a-f-]{32,}$/i.test(name)) return `${t('visitor')} ${name.slice(-4)}`;
    return name;
  }

  function initials(name) {
    const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
    return (words.length > 1 ? words[0][0] + words[1][0] : String(name || '?').slice(0, 2)).toUpperCase();
  }

  /** On a phone the owner navigation scrolls sideways: keep the current page's tab in view. */
  function centerNav() {
    const nav = document.querySelector('.owner-nav');
    const current = nav && nav.querySelector('[aria-current="page"]');
    if (current) nav.scrollLeft = current.offsetLeft - (nav.clientWidth - current.offsetWidth) / 2;
  }
  window.addEventListener('resize', centerNav);

  /** An owner page: the top bar, the navigation, and the page owner.js draws. */
  function ownerView(page) {
    const main = h('main', { class: 'owner', id: 'owner-page', 'data-page': page });
    const draw = () => {
      mount(h('div', { class: 'shell' }, topBar(draw, false), ownerNav(page), noticesBar(draw), main));
      centerNav();
      window.SapaOwner.render(page, main, { h, api, icon, lang, csrf, me: state.me });
    };
    draw();
  }

  async function consoleView(page) {
    try {
      state.me = await api('GET', '/v1/console/me');
    } catch {
      return;
    }
    // Owners' notices (a quota at 80% or used up) come once: keep them until dismissed.
    if (Array.isArray(state.me.notices) && state.me.notices.length) {
      const kept = storedNotices();
      for (const n of state.me.notices) {
        if (!kept.some((k) => k.kind === n.kind && k.month === n.month)) kept.push({ kind: n.kind, month: n.month });
      }
      localStorage.setItem('sapa.notices', JSON.stringify(kept));
    }
    if (page) {
      if (isOwner() && window.SapaOwner) {
        ownerView(page);
        return;
      }
      // Agents have no owner pages: their inbox instead.
      history.replaceState(null, '', '/console');
    }
    render();
    try {
      const composer = await api('GET', '/v1/console/canned');
      state.canned = composer.canned_replies || [];
      state.templates = composer.agent_templates || [];
    } catch { /* the composer works without them */ }
    await refresh();
    // A link from an owner page (e.g. an unanswered question's conversation) opens that chat.
    const linked = new URLSearchParams(location.search).get('conversation');
    if (linked) select(linked);
    connectEvents();
    state.timer = setInterval(refresh, FALLBACK_POLL_MS);
  }

  /** Refetches the queue (and the open chat) soon, once for a burst of events. */
  function scheduleRefresh() {
    if (state.pending) return;
    state.pending = setTimeout(() => { state.pending = null; refresh(); }, 150);
  }

  /** Subscribes to the tenant's console events; reconnects with a growing delay. */
  function connectEvents(delay = 1000) {
    if (!('EventSource' in window)) return;
    const source = new EventSource('/v1/console/events');
    state.events = source;
    source.addEventListener('open', () => { delay = 1000; setLive(true); });
    source.addEventListener('conversation', (e) => {
      let data = null;
      try { data = JSON.parse(e.data); } catch { return; }
      const before = state.known.get(data.id);
      state.known.set(data.id, data.state);
      if (data.state === 'waiting_human' && before !== 'waiting_human') notifyWaiting();
      scheduleRefresh();
    });
    source.addEventListener('presence', scheduleRefresh);
    source.addEventListener('resync', scheduleRefresh);
    source.addEventListener('error', () => {
      setLive(false);
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (refused or signed out): retry later; the poll notices a logout.
        setTimeout(() => connectEvents(Math.min(delay * 2, 30000)), delay);
      }
    });
  }

  function setLive(live) {
    state.live = live;
    const dot = document.getElementById('live');
    if (dot) {
      dot.className = `live${live ? ' on' : ''}`;
      dot.title = live ? t('live') : t('offline');
    }
  }

  /** A desktop notification for a newly waiting chat, when the agent allowed them. */
  function notifyWaiting() {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    try {
      const n = new Notification('Sapa', { body: t('newWaiting'), tag: 'sapa-waiting' });
      n.onclick = () => { window.focus(); state.queue = 'waiting'; render(); refresh(); };
    } catch { /* some browsers allow notifications only from a service worker */ }
  }

  function bellButton() {
    const supported = 'Notification' in window;
    const permission = supported ? Notification.permission : 'denied';
    const label = permission === 'granted' ? t('bellOn') : permission === 'denied' ? t('bellBlocked') : t('bell');
    return h('button', {
      class: `ghost bell${permission === 'granted' ? ' on' : ''}`, id: 'bell', title: label, 'aria-label': label,
      disabled: !supported || permission === 'denied',
      // Permission is asked only here, on the agent's click, as browsers require.
      onclick: async () => {
        try { await Notification.requestPermission(); } catch { /* unchanged */ }
        render();
      },
    }, icon(BELL));
  }

  /** The owner pages, in the navigation's order (drawn by owner.js). */
  const OWNER_PAGES = ['bot', 'knowledge', 'unanswered', 'flows', 'usage', 'keys'];
  const isOwner = () => state.me && state.me.staff.role === 'owner';

  /**
   * Adds a customer's question to the golden set with what the bot does with it today (the
   * document its answer cites, through the draft's "try it"); a question it cannot answer yet
   * is left to the Unanswered page.
   */
  async function addGolden(question, button) {
    button.disabled = true;
    try {
      const tried = await api('POST', '/v1/console/bot/draft/try', { text: question });
      const doc = (tried.cited_docs || [])[0] || (tried.retrieved_docs || [])[0];
      if (!doc) {
        button.replaceWith(h('small', { class: 'golden-note' }, t('goldenNoAnswer')));
        return;
      }
      await api('POST', '/v1/console/golden', { query: question, doc });
      button.replaceWith(h('small', { class: 'golden-note ok', 'data-golden-doc': doc }, `✓ ${t('goldenAdded')} · ${doc}`));
    } catch (err) {
      button.disabled = false;
      button.title = err.message;
    }
  }

  function storedNotices() {
    try {
      const kept = JSON.parse(localStorage.getItem('sapa.notices') || '[]');
      return Array.isArray(kept) ? kept.filter((n) => n && typeof n.kind === 'string') : [];
    } catch {
      return [];
    }
  }

  /** The owner's notices, each with a link to the usage page and a way to dismiss it. */
  function noticesBar(rerender) {
    if (!isOwner()) return null;
    const kept = storedNotices().filter((n) => t(`notice_${n.kind}`) !== `notice_${n.kind}`);
    if (!kept.length) return null;
    return h('div', { class: 'notices', id: 'notices' }, kept.map((n) => h('div', { class: `banner notice ${n.kind}`, role: 'status', 'data-kind': n.kind },
      h('span', {}, `${t(`notice_${n.kind}`)} (${n.month}) `),
      h('a', { href: '/console/usage' }, t('seeUsage')),
      h('button', {
        type: 'button', class: 'ghost dismiss', title: t('dismiss'), 'aria-label': t('dismiss'),
        onclick: () => {
          localStorage.setItem('sapa.notices', JSON.stringify(storedNotices().filter((k) => !(k.kind === n.kind && k.month === n.month))));
          rerender();
        },
      }, '×'))));
  }

  /** The owner's navigation between the inbox and the owner pages; agents see none. */
  function ownerNav(current) {
    if (!isOwner()) return null;
    const link = (page) => h('a', {
      href: page === 'inbox' ? '/console' : `/console/${page}`, 'data-page': page,
      'aria-current': current === page ? 'page' : null,
    }, t(`nav_${page}`));
    return h('nav', { class: 'owner-nav', 'aria-label': t('ownerPages') }, link('inbox'), OWNER_PAGES.map(link));
  }

  /** The top bar: brand, live dot (inbox only), who is signed in, language, bell, presence. */
  function topBar(rerender, inbox) {
    const me = state.me.staff;
    const logout = h('button', {
      class: 'ghost',
      onclick: async () => {
        try { await api('POST', '/v1/console/logout', {}); } catch { /* signed out either way */ }
        sessionStorage.removeItem('sapa.csrf');
        location.assign('/console/login');
      },
    }, t('logout'));
    const online = state.me.presence === 'online';
    const presence = h('button', {
      class: `presence${online ? ' on' : ''}`, id: 'presence', 'aria-pressed': String(online),
      onclick: async () => {
        try {
          const data = await api('POST', '/v1/console/presence', { status: online ? 'away' : 'online' });
          state.me.presence = data.status;
          rerender();
        } catch { /* unchanged */ }
      },
    }, online ? t('online') : t('away'));
    const language = h('button', {
      class: 'ghost lang', id: 'lang', title: lang === 'id' ? 'English' : 'Bahasa Indonesia',
      onclick: () => {
        lang = lang === 'id' ? 'en' : 'id';
        localStorage.setItem('sapa.lang', lang);
        document.documentElement.lang = lang;
        rerender();
      },
    }, lang === 'id' ? 'EN' : 'ID');
    return h('header', { class: 'top' }, brand(),
      inbox ? h('span', { class: `live${state.live ? ' on' : ''}`, id: 'live', title: state.live ? t('live') : t('offline'), role: 'status' }) : null,
      h('div', { class: 'who' }, `${me.email} · ${me.tenant}`), language, inbox ? bellButton() : null, presence, logout);
  }

  function render() {
    const tabs = h('div', { class: 'tabs', role: 'tablist' },
      ['waiting', 'mine', 'open', 'resolved'].map((q) => h('button', {
        role: 'tab', 'aria-selected': String(state.queue === q), 'data-queue': q,
        onclick: () => { state.queue = q; render(); refresh(); },
      }, t(q))));
    const items = h('ul', { class: 'items', id: 'items' });
    const list = h('section', { class: 'list', 'aria-label': t(state.queue) }, tabs, items);
    const thread = h('section', { class: 'thread', id: 'thread' });
    const details = h('aside', { class: 'details', id: 'details', 'aria-label': t('details') });
    const panes = h('div', { class: `panes${state.selected ? ' open' : ''}`, id: 'panes' }, list, thread, details);
    mount(h('div', { class: 'shell' },
      topBar(render, true),
      ownerNav('inbox'),
      noticesBar(render),
      state.me.advise_2fa ? h('div', { class: 'banner', role: 'note' }, t('advise2fa')) : null,
      panes));
    renderItems();
    renderThread();
  }

  /** The details pane: who the customer is, where else they write, and their earlier chats. */
  function renderDetails() {
    const pane = document.getElementById('details');
    if (!pane) return;
    const data = state.conversation;
    if (!state.selected || !data || data.error) {
      pane.replaceChildren(h('div', { class: 'empty' }, t('pickDetails')));
      return;
    }
    const c = data.conversation;
    const channel = ['whatsapp', 'telegram', 'webchat'].includes(c.channel) ? c.channel : 'other';
    const facts = h('dl', { class: 'facts' },
      h('dt', {}, t('status')), h('dd', {}, t(`state_${c.state}`)),
      c.handoff_reason ? [h('dt', {}, t('reason')), h('dd', { id: 'handoff-reason' }, t(c.handoff_reason))] : null,
      c.state === 'waiting_human' && c.waiting_since ? [h('dt', {}, t('waitingSince')), h('dd', {}, since(c.waiting_since))] : null,
      windowLeft(c) ? [h('dt', {}, t('window')), h('dd', {}, windowLeft(c).split(': ')[1])] : null,
      data.flow ? [h('dt', {}, t('flowNow')), h('dd', { id: 'flow-now' }, data.flow.name)] : null,
      (data.tags || []).length ? [h('dt', {}, t('tags')), h('dd', { id: 'tags' }, data.tags.map((tag) => h('span', { class: 'badge other' }, tag)))] : null,
      data.contact && data.contact.follow_up_opt_out ? [h('dt', {}, t('followUps')), h('dd', { id: 'follow-up-opt-out' }, t('followUpsOff'))] : null);
    const channels = ((data.contact && data.contact.channels) || []).map((k) => h('li', {},
      h('span', { class: `badge ${['whatsapp', 'telegram', 'webchat'].includes(k.channel) ? k.channel : 'other'}` }, k.channel),
      h('span', { class: 'address' }, k.username ? `@${k.username}` : (k.channel === 'webchat' ? t('visitor') : k.address))));
    const previous = (data.previous_conversations || []).map((p) => h('li', {}, h('button', {
      class: 'previous', 'data-id': p.id, onclick: () => select(p.id),
    },
    h('span', { class: 'previous-top' }, h('b', {}, t(`state_${p.state}`)), h('small', {}, new Date(p.updated_at).toLocaleDateString(lang, { day: 'numeric', month: 'short', year: 'numeric' }))),
    h('span', { class: 'previous-last' }, p.last_message || p.channel))));
    pane.replaceChildren(
      h('button', { class: 'ghost details-back', id: 'details-back', onclick: () => document.getElementById('panes').classList.remove('show-details') }, `← ${t('back')}`),
      h('div', { class: 'profile' },
        h('span', { class: `avatar big ${channel}` }, initials(customerName(c))),
        h('b', {}, customerName(c)),
        h('span', { class: `badge ${channel}` }, c.channel)),
      facts,
      h('h3', {}, t('channels')), h('ul', { class: 'channels' }, channels),
      h('h3', {}, t('previous')),
      previous.length ? h('ul', { class: 'history' }, previous) : h('p', { class: 'muted' }, t('noPrevious')));
  }

  function renderItems() {
    const list = document.getElementById('items');
    if (!list) return;
    if (!state.items.length) {
      list.replaceChildren(h('li', { class: 'empty' }, t('empty')));
      return;
    }
    list.replaceChildren(...state.items.map((item) => {
      const channel = ['whatsapp', 'telegram', 'webchat'].includes(item.channel) ? item.channel : 'other';
      const mine = item.assignee && item.assignee === state.me.staff.id;
      const pill = item.state === 'waiting_human'
        ? h('span', { class: 'pill' }, `${t('waitingFor')} ${since(item.waiting_since)}`)
        : item.state === 'human' ? h('span', { class: `pill${mine ? ' mine' : ''}` }, mine ? t('you') : t('assigned')) : null;
      return h('li', {}, h('button', {
        'aria-current': String(state.selected === item.id), 'data-id': item.id,
        onclick: () => select(item.id),
      },
      h('span', { class: `avatar ${channel}`, title: item.channel }, initials(customerName(item))),
      h('span', { class: 'item-main' },
        h('span', { class: 'item-top' }, h('span', { class: 'item-name' }, customerName(item)), h('span', { class: `badge ${channel}` }, item.channel)),
        h('span', { class: 'item-last' }, item.last_message || ''),
        pill)));
    }));
  }

  async function select(id) {
    if (state.selected !== id) state.draft = '';
    state.selected = id;
    document.getElementById('panes').classList.add('open');
    document.getElementById('panes').classList.remove('show-details');
    renderItems();
    await loadConversation();
  }

  /** Whether the agent is writing: focus in the composer (its reply, note box, buttons). */
  function composing() {
    const active = document.activeElement;
    return Boolean(active && active.closest && active.closest('.composer'));
  }

  /** Loads and shows the selected conversation. A background load (a refresh pushed by the
   *  event stream) that returns while the agent is writing keeps the data for the next render
   *  and leaves the composer alone: re-rendering under the agent's cursor would move the focus
   *  and send their next keystrokes nowhere. */
  async function loadConversation(background = false) {
    if (!state.selected) return;
    const selected = state.selected;
    let loaded;
    try {
      loaded = await api('GET', `/v1/console/conversations/${encodeURIComponent(selected)}`);
    } catch (err) {
      loaded = { error: err.message };
    }
    if (state.selected !== selected) return;
    state.conversation = loaded;
    if (background && composing()) return;
    renderThread();
  }

  function renderThread() {
    const thread = document.getElementById('thread');
    if (!thread) return;
    const data = state.conversation;
    // A re-render while the agent writes (after their own action) hands the new reply box the
    // focus and the caret, so typing continues where it was.
    const active = document.activeElement;
    const caret = active && active.id === 'reply' ? [active.selectionStart, active.selectionEnd] : null;
    renderDetails();
    if (!state.selected || !data) {
      thread.replaceChildren(h('div', { class: 'empty' }, t('pick')));
      return;
    }
    if (data.error) {
      thread.replaceChildren(h('div', { class: 'empty' }, data.error));
      return;
    }
    const c = data.conversation;
    const mine = c.assignee && c.assignee === state.me.staff.id;
    const act = (path) => async () => {
      try {
        await api('POST', `/v1/console/conversations/${encodeURIComponent(c.id)}/${path}`, {});
        await refresh();
      } catch (err) {
        alertLine.textContent = err.message;
      }
    };
    const alertLine = h('div', { class: 'error', role: 'alert' });
    const back = h('button', { class: 'ghost back', onclick: () => { state.selected = null; state.draft = ''; state.conversation = null; document.getElementById('panes').classList.remove('open', 'show-details'); renderItems(); renderDetails(); }, 'aria-label': t('back'), title: t('back') }, '←', h('span', { class: 'label' }, ` ${t('back')}`));
    const meta = [c.channel, windowLeft(c), c.handoff_reason ? `${t('reason')}: ${t(c.handoff_reason)}` : null].filter(Boolean).join(' · ');
    const actions = h('div', { class: 'actions' },
      !mine ? h('button', { class: 'primary', id: 'claim', onclick: act('claim') }, t('claim')) : null,
      c.state !== 'bot' ? h('button', { id: 'handback', onclick: act('handback') }, t('handback')) : null,
      c.state !== 'closed' ? h('button', { id: 'resolve', onclick: act('resolve') }, t('resolve')) : null);
    const messages = h('div', { class: 'messages', id: 'messages' }, data.messages.map((m) => {
      const who = { customer: t('customer'), bot: t('bot'), agent: t('agent'), note: t('noteAuthor') }[m.author] || m.author;
      const time = new Date(m.created_at).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
      const status = m.status === 'failed' ? ` · ${t('failed')}` : '';
      // Customer photos are fetched through the console's own media route (same origin, the
      // session cookie); other files are offered as a download.
      const media = m.media && m.media.url
        ? (['image', 'sticker'].includes(m.media.kind)
          ? h('a', { href: m.media.url, target: '_blank', rel: 'noopener' }, h('img', { class: 'media', src: m.media.url, alt: t('photo'), loading: 'lazy' }))
          : h('a', { class: 'file', href: m.media.url, download: '' }, icon(CLIP), ` ${t('download')} ${m.media.kind}`))
        : null;
      // Owners turn a customer's question into a golden (regression) question in one click.
      const golden = isOwner() && m.author === 'customer' && m.text && m.text.trim()
        ? h('button', { type: 'button', class: 'golden', 'data-golden': '', title: t('addGolden'), onclick: (e) => addGolden(m.text.trim(), e.currentTarget) }, `+ ${t('addGolden')}`)
        : null;
      // The message's trace id (with telemetry.otlp_endpoint): "why did the bot say this"
      // is followed in the tracing backend from here.
      const trace = m.trace_id ? { title: `trace ${m.trace_id}`, 'data-trace': m.trace_id } : {};
      return h('div', { class: `msg ${m.author}${media ? ' has-media' : ''}` }, media, m.text, h('small', trace, `${who} · ${time}${status}`), golden);
    }));
    const convUrl = `/v1/console/conversations/${encodeURIComponent(c.id)}`;
    const windowClosed = Boolean(c.window_expires_at) && Date.parse(c.window_expires_at) <= Date.now();
    const suggest = h('ul', { class: 'suggest', id: 'suggest', role: 'listbox', hidden: true });
    const text = h('textarea', {
      id: 'reply', placeholder: t('placeholder'), rows: '2', title: t('cannedHint'),
      oninput: () => {
        state.draft = text.value;
        showCanned();
        if (mine && !note.checked && text.value.trim() && Date.now() - state.lastTyping > 5000) {
          state.lastTyping = Date.now();
          api('POST', `${convUrl}/typing`, {}).catch(() => { /* best effort */ });
        }
      },
      onkeydown: (e) => {
        const first = suggest.querySelector('button');
        if (first && !suggest.hidden && (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey))) {
          e.preventDefault();
          first.click();
        }
      },
    });
    text.value = state.draft || '';
    /** Offers the canned replies whose shortcut starts with what follows a leading `/`. */
    function showCanned() {
      const value = text.value;
      const matches = value.startsWith('/') && !value.includes(' ')
        ? state.canned.filter((r) => r.shortcut.startsWith(value.slice(1).toLowerCase())).slice(0, 6)
        : [];
      suggest.hidden = matches.length === 0;
      suggest.replaceChildren(...matches.map((r) => h('li', {}, h('button', {
        type: 'button', 'data-shortcut': r.shortcut,
        onclick: () => { text.value = r.text; state.draft = r.text; suggest.hidden = true; text.focus(); },
      }, h('b', {}, `/${r.shortcut}`), h('span', {}, r.text)))));
    }
    const note = h('input', { type: 'checkbox', id: 'note', checked: windowClosed, disabled: windowClosed, onchange: () => { text.placeholder = note.checked ? t('notePlaceholder') : t('placeholder'); } });
    if (windowClosed) text.placeholder = t('notePlaceholder');
    const choices = h('input', { id: 'choices', maxlength: '80', placeholder: 'Ya, Tidak' });
    const attachUrl = h('input', { id: 'attachment-url', type: 'url', inputmode: 'url', placeholder: 'https://…' });
    const attachKind = h('select', { id: 'attachment-kind' }, h('option', { value: 'image' }, t('image')), h('option', { value: 'document' }, t('document')));
    const attachName = h('input', { id: 'attachment-filename', placeholder: 'menu.pdf' });
    const extras = windowClosed ? null : h('details', { class: 'extras' }, h('summary', {}, t('more')),
      h('label', { for: 'choices' }, t('choices')), choices,
      h('label', { for: 'attachment-url' }, t('attachment')), h('div', { class: 'row' }, attachUrl, attachKind),
      h('label', { for: 'attachment-filename' }, t('filename')), attachName);
    const send = h('button', { class: 'primary', id: 'send', type: 'submit' }, t('send'));
    const composer = h('form', {
      class: 'composer',
      onsubmit: async (e) => {
        e.preventDefault();
        const value = text.value.trim();
        const body = { text: value, note: note.checked };
        if (!note.checked) {
          const picked = choices.value.split(',').map((x) => x.trim()).filter(Boolean);
          if (picked.length) body.choices = picked;
          if (attachUrl.value.trim()) {
            body.attachment = { url: attachUrl.value.trim(), kind: attachKind.value };
            if (attachName.value.trim()) body.attachment.filename = attachName.value.trim();
          }
        }
        if (!value && !body.attachment) return;
        send.disabled = true;
        alertLine.textContent = '';
        try {
          await api('POST', `${convUrl}/messages`, body);
          text.value = '';
          state.draft = '';
          await loadConversation();
        } catch (err) {
          alertLine.textContent = err.message;
        } finally {
          send.disabled = false;
        }
      },
    },
    !mine ? h('div', { class: 'hint' }, t('claimFirst')) : null,
    windowClosed && mine ? templatePanel() : null,
    suggest,
    text,
    extras,
    h('div', { class: 'row' }, h('label', { for: 'note' }, note, t('note')), send),
    alertLine);

    /** Outside WhatsApp's 24-hour window: pick an approved template and send it. */
    function templatePanel() {
      if (!state.templates.length) return h('div', { class: 'window-closed' }, h('p', {}, t('windowClosedHint')), h('p', {}, t('noTemplates')));
      const preview = h('p', { class: 'template-preview', id: 'template-preview' }, state.templates[0].body);
      const select = h('select', {
        id: 'template',
        onchange: () => { preview.textContent = state.templates[Number(select.value)].body; },
      }, state.templates.map((tpl, i) => h('option', { value: String(i) }, `${tpl.name} (${tpl.language})`)));
      const go = h('button', {
        class: 'primary', type: 'button', id: 'send-template',
        onclick: async () => {
          const tpl = state.templates[Number(select.value)];
          go.disabled = true;
          try {
            await api('POST', `${convUrl}/messages`, { template: { name: tpl.name, language: tpl.language } });
            await loadConversation();
          } catch (err) {
            alertLine.textContent = err.message;
          } finally {
            go.disabled = false;
          }
        },
      }, t('sendTemplate'));
      return h('div', { class: 'window-closed', id: 'window-closed' },
        h('p', {}, t('windowClosedHint')),
        h('label', { for: 'template' }, t('template')), h('div', { class: 'row' }, select, go), preview);
    }
    thread.replaceChildren(
      h('div', { class: 'thread-head' }, back, h('div', { class: 'title' }, h('b', {}, customerName(c)), h('span', {}, meta)),
        h('button', { class: 'ghost info', id: 'info', 'aria-controls': 'details', onclick: () => document.getElementById('panes').classList.toggle('show-details') }, t('info')),
        actions),
      messages,
      composer);
    messages.scrollTop = messages.scrollHeight;
    if (caret) {
      text.focus();
      text.setSelectionRange(caret[0], caret[1]);
    }
  }

  async function refresh() {
    try {
      const data = await api('GET', `/v1/console/conversations?queue=${state.queue}`);
      state.items = data.conversations;
      for (const item of state.items) state.known.set(item.id, item.state);
      renderItems();
      // Re-rendering would disturb what the agent is writing: wait while the composer has focus.
      if (state.selected && !composing()) await loadConversation(true);
    } catch { /* shown on the next successful refresh */ }
  }

  const route = location.pathname.replace(/\/+$/, '');
  if (route === '/console/login') loginView();
  else if (route === '/console/set-password') setPasswordView();
  else {
    const page = route.replace(/^\/console\/?/, '');
    consoleView(OWNER_PAGES.includes(page) ? page : null);
  }
})();
