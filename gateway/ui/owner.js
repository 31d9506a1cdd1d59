// Sapa owner pages: Bot, Knowledge, Unanswered, Flows, Usage and API keys. Plain JavaScript, no build
// step, loaded by the console page under the same strict CSP (no inline script or style). The
// console script draws the top bar and the navigation, then calls SapaOwner.render(page, root,
// ctx) with its helpers. Every string from the server is rendered with textContent (through
// `h`), never as HTML. An endpoint this server does not have yet (404) shows a calm
// "not available" note instead of an error.
'use strict';

(() => {
  const T = {
    id: {
      notAvailable: 'Belum tersedia di server ini', notAvailableHint: 'Fitur ini aktif setelah server Sapa diperbarui. Halaman lain tetap bisa dipakai.',
      loading: 'Memuat…', retry: 'Coba lagi', cancel: 'Batal', sure: 'Yakin?', never: 'belum pernah',
      // Bot
      botTitle: 'Bot', botHint: 'Atur cara bot menjawab pelanggan. Perubahan disimpan sebagai draf dan baru dipakai pelanggan setelah diterbitkan.',
      instructions: 'Instruksi untuk bot', instructionsHint: 'Nada bicara, hal yang boleh dan tidak boleh dijanjikan, cara menyapa.',
      greeting: 'Salam pembuka', greetingHint: 'Kosongkan untuk salam bawaan.', locale: 'Bahasa utama', style: 'Gaya jawaban',
      style_short: 'Singkat', style_normal: 'Lengkap', locale_id: 'Bahasa Indonesia', locale_en: 'English',
      keywords: 'Kata kunci alih ke manusia', keywordsHint: 'Pisahkan dengan koma, mis. komplain, refund, admin.',
      followUp: 'Tindak lanjut', followUpOn: 'Atur tindak lanjut di sini (bukan dari sapa.toml)', followUpAfter: 'Kirim setelah pelanggan diam selama', followUpQuiet: 'Jam tenang (tidak mengirim)', followUpMax: 'Paling banyak per pelanggan per 7 hari', followUpText: 'Pesan (kosong: "Ada lagi yang bisa kami bantu?")',
      after_0: 'Mati', after_30m: '30 menit', after_1h: '1 jam', after_2h: '2 jam', after_4h: '4 jam', after_1d: '1 hari',
      hours: 'Jam operasional tim', hoursOn: 'Tim hanya membalas pada jam tertentu', timezone: 'Zona waktu', holidays: 'Hari libur (YYYY-MM-DD, pisahkan dengan koma)',
      dayHint: '08:00-17:00 atau closed', days: ['Senin', 'Selasa', 'Rabu', 'Kamis', 'Jumat', 'Sabtu', 'Minggu'],
      saveDraft: 'Simpan draf', draftSaved: 'Draf tersimpan.', runRegression: 'Cek regresi', publish: 'Terbitkan', published: 'Diterbitkan sebagai versi',
      tryTitle: 'Coba draf', tryHint: 'Tanyakan sesuatu seperti pelanggan. Jawaban memakai draf yang terakhir disimpan dan tidak dikirim ke siapa pun.',
      tryPlaceholder: 'Mis. jam buka hari Minggu?', tryEmpty: 'Jawaban draf dan dokumen yang dikutip muncul di sini.', ask: 'Tanya', sources: 'Sumber jawaban', noSources: 'Tanpa kutipan dokumen.',
      kind_reply: 'Balasan bot', kind_llm_answer: 'Dijawab model', kind_passage: 'Kutipan dokumen', kind_no_match: 'Tidak ditemukan', kind_failed: 'Gagal menjawab', kind_handoff: 'Dialihkan ke tim', kind_llm_handoff: 'Dialihkan ke tim', kind_llm_clarify: 'Bertanya balik',
      goldenTitle: 'Pertanyaan uji', goldenHint: 'Dipakai cek regresi sebelum terbit. Tambah dari "Coba" atau dari percakapan; format JSONL sama dengan sapa kb eval.', goldenCount: 'pertanyaan uji', goldenEmpty: 'Belum ada pertanyaan uji. Tambahkan dari jawaban "Coba" atau dari percakapan pelanggan.', goldenImported: 'pertanyaan diimpor', exportJsonl: 'Ekspor JSONL', importJsonl: 'Impor JSONL', line: 'baris',
      addGolden: 'Jadikan pertanyaan uji', goldenAdded: 'Masuk pertanyaan uji', expects: 'Diharapkan dijawab dari', expectsAbstain: 'Diharapkan tidak dijawab',
      regressionTitle: 'Cek regresi', regressionHint: 'Pertanyaan uji (golden set) dijawab dengan draf dan dengan versi live.',
      draft: 'Draf', live: 'Live', passed: 'lulus', failed: 'gagal', newlyFailing: 'Baru gagal dengan draf ini', noNewFailures: 'Tidak ada pertanyaan yang baru gagal. Aman diterbitkan.',
      expected: 'Diharapkan', got: 'Didapat',
      confirmTitle: 'Draf ini membuat pertanyaan uji gagal', confirmHint: 'pertanyaan yang sebelumnya benar kini gagal. Terbitkan juga?', publishAnyway: 'Tetap terbitkan',
      versions: 'Riwayat versi', noVersions: 'Belum ada versi yang diterbitkan.', restore: 'Pulihkan', restored: 'Dipulihkan sebagai versi', by: 'oleh', noDiff: 'Tanpa perubahan isi.',
      field_instructions: 'Instruksi', field_greeting: 'Salam', field_locale: 'Bahasa', field_answer_style: 'Gaya', field_handoff_keywords: 'Kata kunci', field_business_hours: 'Jam operasional',
      empty: '(kosong)',
      // Knowledge
      kbTitle: 'Pengetahuan', kbHint: 'Dokumen yang dipakai bot untuk menjawab. Bot langsung memakai dokumen baru setelah unggahan selesai.',
      drop: 'Tarik file ke sini', dropOr: 'atau', choose: 'pilih file', dropHint: 'Format', perFile: 'maks.', uploading: 'Mengunggah…', indexing: 'Mengindeks…',
      outcome_indexed: 'Terindeks', outcome_replaced: 'Diperbarui', outcome_unchanged: 'Tidak berubah', chunks: 'potongan',
      documents: 'Dokumen', noDocuments: 'Belum ada dokumen. Unggah FAQ, daftar harga, atau kebijakan toko Anda.',
      uploaded: 'Diunggah', updated: 'diubah', preview: 'Lihat potongan', hidePreview: 'Tutup', replace: 'Ganti', delete: 'Hapus', deleted: 'Dihapus',
      searchTitle: 'Uji pencarian', searchHint: 'Lihat bagian dokumen yang diambil bot untuk sebuah pertanyaan, dengan nilai relevansinya.',
      searchPlaceholder: 'Mis. berapa harga kopi susu?', search: 'Cari', threshold: 'Bot menjawab bila relevansi minimal', relevance: 'relevansi',
      answerable: 'Cukup relevan', belowThreshold: 'Di bawah ambang', noResults: 'Tidak ada bagian dokumen yang cocok. Bot akan mengaku tidak tahu atau mengalihkan ke tim.',
      // Unanswered
      unTitle: 'Pertanyaan tak terjawab', unHint: 'Pertanyaan pelanggan yang belum bisa dijawab bot, dikelompokkan yang mirip. Jawab sekali, bot langsung bisa menjawabnya.',
      exportCsv: 'Ekspor CSV', noUnanswered: 'Semua pertanyaan sudah terjawab. Kerja bagus!', asked: 'kali ditanyakan', lastSeen: 'terakhir',
      conversation: 'Percakapan', answerIt: 'Jawab', dismiss: 'Abaikan', yourAnswer: 'Jawaban Anda', answerHint: 'Jawaban masuk ke dokumen tanya-jawab.csv dan langsung dipakai bot.',
      saveAnswer: 'Simpan jawaban', answered: 'Terjawab. Bot kini memakai jawaban ini.', dismissed: 'Diabaikan.',
      // Usage
      usageTitle: 'Pemakaian', usageHint: 'Pesan, percakapan, dan biaya model per hari.', last: 'hari terakhir',
      messagesIn: 'Pesan masuk', messagesOut: 'Pesan keluar', conversations: 'Percakapan', answerRate: 'Tingkat jawab', handoffs: 'Dialihkan ke tim', cost: 'Biaya model',
      perDay: 'Pesan per hari', answerChart: 'Tingkat jawab dan abstain', tokensChart: 'Token model per hari', promptTokens: 'Token prompt', completionTokens: 'Token jawaban',
      abstainRate: 'Abstain', byChannel: 'Per kanal', channel: 'Kanal', firstResponse: 'Respons pertama (median)',
      quotaWarning: 'Pemakaian bulan ini mendekati kuota.', quotaExceeded: 'Kuota bulan ini habis. Sampai kuota dinaikkan atau bulan berganti, bot menjawab dengan kutipan dokumen dan menawarkan admin, tanpa model.',
      quota: 'Kuota bulan', messages: 'Pesan', tokens: 'Token', noData: 'Belum ada pemakaian pada rentang ini.', saveQuota: 'Simpan kuota', quotaSaved: 'Kuota tersimpan.', unlimited: 'tanpa batas', messagesLimit: 'Batas pesan per bulan', tokensLimit: 'Batas token per bulan',
      // Keys
      keysTitle: 'Kunci API', keysHint: 'Untuk sistem Anda sendiri: mengunggah pengetahuan, mengirim pesan, dan OTP lewat REST API. Rahasia kunci hanya ditampilkan sekali.',
      newKey: 'Buat kunci baru', scopes: 'Izin', scope_knowledge: 'Pengetahuan (unggah, cari, hapus dokumen)', scope_messages: 'Pesan (kirim pesan sebagai agen)', scope_otp: 'OTP (kirim dan cek kode)',
      create: 'Buat kunci', created: 'Dibuat', lastUsed: 'Terakhir dipakai', status: 'Status', active: 'Aktif', revoked: 'Dicabut', revoke: 'Cabut',
      secretOnce: 'Salin dan simpan kunci ini sekarang. Demi keamanan, kunci ini tidak akan ditampilkan lagi.', copy: 'Salin', copied: 'Tersalin',
      noKeys: 'Belum ada kunci API.', keysList: 'Kunci tenant ini', chooseScope: 'Pilih minimal satu izin.',
      // Flows
      flowsTitle: 'Alur', flowsHint: 'Percakapan terpandu (mis. cek pesanan, reservasi) yang dimulai oleh kata kunci pelanggan. Alur yang disimpan langsung dipakai bot.',
      flowsList: 'Alur bisnis ini', noFlows: 'Belum ada alur. Klik "Alur baru" untuk mulai dari contoh.', flowNew: 'Alur baru',
      flowEditor: 'Editor alur', flowEditorHint: 'YAML alur. Cek dulu, lalu simpan; nama alur diambil dari baris name.', flowNewHint: 'Contoh kecil yang valid: ubah nama, kata kunci, dan teksnya, lalu simpan.',
      flowYaml: 'YAML alur', flowCheck: 'Cek', flowSave: 'Simpan', flowSaved: 'Tersimpan dan aktif', flowKept: 'alur lama tetap ada:',
      flowValid: 'Alur valid', flowSteps: 'langkah', flowProblems: 'masalah; klik untuk menuju barisnya.', flowLine: 'baris', flowColumn: 'kolom',
    },
    en: {
      notAvailable: 'Not available on this server yet', notAvailableHint: 'This feature turns on when the Sapa server is updated. The other pages keep working.',
      loading: 'Loading…', retry: 'Try again', cancel: 'Cancel', sure: 'Sure?', never: 'never',
      botTitle: 'Bot', botHint: 'Decide how the bot answers your customers. Changes are saved as a draft and reach customers only once published.',
      instructions: 'Instructions for the bot', instructionsHint: 'Tone of voice, what it may and may not promise, how to greet.',
      greeting: 'Greeting', greetingHint: 'Leave empty for the built-in greeting.', locale: 'Main language', style: 'Answer style',
      style_short: 'Short', style_normal: 'Detailed', locale_id: 'Bahasa Indonesia', locale_en: 'English',
      keywords: 'Handoff keywords', keywordsHint: 'Comma separated, e.g. complaint, refund, admin.',
      followUp: 'Follow-ups', followUpOn: 'Set follow-ups here (instead of sapa.toml)', followUpAfter: 'Send after the customer is quiet for', followUpQuiet: 'Quiet hours (nothing is sent)', followUpMax: 'At most per customer per 7 days', followUpText: 'Message (empty: "Anything else we can help with?")',
      after_0: 'Off', after_30m: '30 minutes', after_1h: '1 hour', after_2h: '2 hours', after_4h: '4 hours', after_1d: '1 day',
      hours: 'Team hours', hoursOn: 'The team answers only at certain hours', timezone: 'Time zone', holidays: 'Holidays (YYYY-MM-DD, comma separated)',
      dayHint: '08:00-17:00 or closed', days: ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'],
      saveDraft: 'Save draft', draftSaved: 'Draft saved.', runRegression: 'Check regressions', publish: 'Publish', published: 'Published as version',
      tryTitle: 'Try the draft', tryHint: 'Ask something as a customer would. The answer uses the last saved draft and is sent to no one.',
      tryPlaceholder: 'E.g. are you open on Sunday?', tryEmpty: 'The draft\'s answer and the passages it quotes show here.', ask: 'Ask', sources: 'Sources', noSources: 'No document quoted.',
      kind_reply: 'Bot reply', kind_llm_answer: 'Model answer', kind_passage: 'Document passage', kind_no_match: 'Not found', kind_failed: 'Answering failed', kind_handoff: 'Handed to the team', kind_llm_handoff: 'Handed to the team', kind_llm_clarify: 'Asked to clarify',
      goldenTitle: 'Test questions', goldenHint: 'Checked before every publish. Add them from "Try it" or from a conversation; the JSONL format is sapa kb eval\'s.', goldenCount: 'test questions', goldenEmpty: 'No test questions yet. Add them from a "Try it" answer or a customer\'s conversation.', goldenImported: 'questions imported', exportJsonl: 'Export JSONL', importJsonl: 'Import JSONL', line: 'line',
      addGolden: 'Add as a test question', goldenAdded: 'Added to the test questions', expects: 'Expected answer from', expectsAbstain: 'Expected not to be answered',
      regressionTitle: 'Regression check', regressionHint: 'The test questions (golden set) answered with the draft and with the live version.',
      draft: 'Draft', live: 'Live', passed: 'passed', failed: 'failed', newlyFailing: 'Newly failing with this draft', noNewFailures: 'No question newly fails. Safe to publish.',
      expected: 'Expected', got: 'Got',
      confirmTitle: 'This draft makes test questions fail', confirmHint: 'questions that passed before now fail. Publish anyway?', publishAnyway: 'Publish anyway',
      versions: 'Version history', noVersions: 'No version published yet.', restore: 'Restore', restored: 'Restored as version', by: 'by', noDiff: 'No content change.',
      field_instructions: 'Instructions', field_greeting: 'Greeting', field_locale: 'Language', field_answer_style: 'Style', field_handoff_keywords: 'Keywords', field_business_hours: 'Team hours',
      empty: '(empty)',
      kbTitle: 'Knowledge', kbHint: 'The documents the bot answers from. The bot uses a new document as soon as its upload finishes.',
      drop: 'Drop files here', dropOr: 'or', choose: 'choose files', dropHint: 'Formats', perFile: 'max.', uploading: 'Uploading…', indexing: 'Indexing…',
      outcome_indexed: 'Indexed', outcome_replaced: 'Updated', outcome_unchanged: 'Unchanged', chunks: 'passages',
      documents: 'Documents', noDocuments: 'No documents yet. Upload your FAQ, price list or shop policies.',
      uploaded: 'Uploaded', updated: 'changed', preview: 'Show passages', hidePreview: 'Close', replace: 'Replace', delete: 'Delete', deleted: 'Deleted',
      searchTitle: 'Search playground', searchHint: 'See which passages the bot retrieves for a question, with their relevance.',
      searchPlaceholder: 'E.g. how much is a latte?', search: 'Search', threshold: 'The bot answers from relevance', relevance: 'relevance',
      answerable: 'Relevant enough', belowThreshold: 'Below the threshold', noResults: 'No passage matches. The bot will say it does not know or hand the chat to your team.',
      unTitle: 'Unanswered questions', unHint: 'Customer questions the bot could not answer, similar ones grouped. Answer once and the bot knows it from then on.',
      exportCsv: 'Export CSV', noUnanswered: 'Every question has an answer. Well done!', asked: 'times asked', lastSeen: 'last',
      conversation: 'Conversation', answerIt: 'Answer', dismiss: 'Dismiss', yourAnswer: 'Your answer', answerHint: 'The answer goes into the tanya-jawab.csv document and the bot uses it at once.',
      saveAnswer: 'Save answer', answered: 'Answered. The bot now uses this answer.', dismissed: 'Dismissed.',
      usageTitle: 'Usage', usageHint: 'Messages, conversations and model cost per day.', last: 'last days',
      messagesIn: 'Messages in', messagesOut: 'Messages out', conversations: 'Conversations', answerRate: 'Answer rate', handoffs: 'Handed to the team', cost: 'Model cost',
      perDay: 'Messages per day', answerChart: 'Answer and abstain rate', tokensChart: 'Model tokens per day', promptTokens: 'Prompt tokens', completionTokens: 'Completion tokens',
      abstainRate: 'Abstained', byChannel: 'By channel', channel: 'Channel', firstResponse: 'First response (median)',
      quotaWarning: 'This month\'s usage is close to the quota.', quotaExceeded: 'This month\'s quota is used up. Until it is raised or the month ends, the bot answers with document quotes and offers a person, without the model.',
      quota: 'Quota for', messages: 'Messages', tokens: 'Tokens', noData: 'No usage in this range yet.', saveQuota: 'Save quota', quotaSaved: 'Quota saved.', unlimited: 'unlimited', messagesLimit: 'Messages per month', tokensLimit: 'Tokens per month',
      keysTitle: 'API keys', keysHint: 'For your own systems: upload knowledge, send messages and OTPs through the REST API. A key\'s secret is shown only once.',
      newKey: 'Create a key', scopes: 'Permissions', scope_knowledge: 'Knowledge (upload, search, delete documents)', scope_messages: 'Messages (send as an agent)', scope_otp: 'OTP (send and check codes)',
      create: 'Create key', created: 'Created', lastUsed: 'Last used', status: 'Status', active: 'Active', revoked: 'Revoked', revoke: 'Revoke',
      secretOnce: 'Copy and store this key now. For your security it will not be shown again.', copy: 'Copy', copied: 'Copied',
      noKeys: 'No API keys yet.', keysList: 'This tenant\'s keys', chooseScope: 'Choose at least one permission.',
      flowsTitle: 'Flows', flowsHint: 'Guided conversations (e.g. order status, reservations) that a customer\'s keywords start. A saved flow is live at once.',
      flowsList: 'This business\'s flows', noFlows: 'No flows yet. Click "New flow" to start from an example.', flowNew: 'New flow',
      flowEditor: 'Flow editor', flowEditorHint: 'The flow\'s YAML. Check it, then save; the flow\'s name is its name line.', flowNewHint: 'A small valid example: change its name, keywords and texts, then save.',
      flowYaml: 'Flow YAML', flowCheck: 'Check', flowSave: 'Save', flowSaved: 'Saved and live', flowKept: 'the old flow is kept:',
      flowValid: 'The flow is valid', flowSteps: 'steps', flowProblems: 'problem(s); click one to go to its line.', flowLine: 'line', flowColumn: 'column',
    },
  };

  let ctx = null;
  let h = null;
  const t = (key) => (T[ctx.lang] && T[ctx.lang][key] !== undefined ? T[ctx.lang][key] : (T.id[key] !== undefined ? T.id[key] : key));

  const UPLOAD = ['M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4', 'M17 8l-5-5-5 5', 'M12 3v12'];
  const INFO = ['M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z', 'M12 16v-4', 'M12 8h.01'];
  const DOC = ['M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z', 'M14 2v6h6', 'M16 13H8', 'M16 17H8'];
  const DOWNLOAD = ['M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4', 'M7 10l5 5 5-5', 'M12 15V3'];

  /** True when the server has no such endpoint yet (another version of Sapa). */
  const missing = (err) => err && [404, 405, 501].includes(err.status) && !(err.data && err.data.error && /_not_found$/.test(err.data.error.code || ''));

  function fmtDate(iso, withTime = true) {
    if (!iso) return '';
    const d = new Date(iso);
    const opts = withTime ? { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' } : { day: 'numeric', month: 'short', year: 'numeric' };
    return d.toLocaleString(ctx.lang === 'en' ? 'en-GB' : 'id-ID', opts);
  }

  function ago(iso) {
    if (!iso) return '';
    const minutes = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 60000));
    const en = ctx.lang === 'en';
    if (minutes < 1) return en ? 'just now' : 'baru saja';
    if (minutes < 60) return en ? `${minutes} min ago` : `${minutes} menit lalu`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return en ? `${hours} h ago` : `${hours} jam lalu`;
    return en ? `${Math.floor(hours / 24)} days ago` : `${Math.floor(hours / 24)} hari lalu`;
  }

  function number(n, digits = 0) {
    return Number(n || 0).toLocaleString(ctx.lang === 'en' ? 'en-US' : 'id-ID', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }

  function bytes(n) {
    if (n >= 1024 * 1024) return `${number(n / (1024 * 1024), 1)} MB`;
    if (n >= 1024) return `${number(n / 1024, 0)} KB`;
    return `${n} B`;
  }

  function pageHead(title, hint, ...tools) {
    return h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, title), h('p', {}, hint)), tools.length ? h('div', { class: 'page-tools' }, tools) : null);
  }

  function card(id, title, hint, ...children) {
    return h('section', { class: 'ocard', id },
      title ? h('div', { class: 'ocard-head' }, h('h2', {}, title), hint ? h('p', {}, hint) : null) : null,
      children);
  }

  function unavailable(id) {
    return h('div', { class: 'unavailable', id, role: 'note' }, ctx.icon(INFO), h('div', {}, h('b', {}, t('notAvailable')), h('p', {}, t('notAvailableHint'))));
  }

  /** A line that says what happened (`ok`) or what went wrong (`error`). */
  function status(id) {
    const el = h('div', { class: 'ostatus', id, role: 'status' });
    el.ok = (text) => { el.className = 'ostatus ok'; el.textContent = text; };
    el.error = (text) => { el.className = 'ostatus error'; el.textContent = text; };
    el.clear = () => { el.className = 'ostatus'; el.textContent = ''; };
    return el;
  }

  /** A button that asks once more before it acts (no browser dialogs). */
  function confirmButton(attrs, label, action) {
    let armed = false;
    let timer = null;
    const button = h('button', {
      ...attrs,
      type: 'button',
      onclick: async () => {
        if (!armed) {
          armed = true;
          button.classList.add('armed');
          button.textContent = t('sure');
          timer = setTimeout(() => { armed = false; button.classList.remove('armed'); button.textContent = label; }, 4000);
          return;
        }
        clearTimeout(timer);
        button.disabled = true;
        try { await action(); } finally { button.disabled = false; armed = false; button.classList.remove('armed'); button.textContent = label; }
      },
    }, label);
    return button;
  }

  // ----- Bot ----------------------------------------------------------------------------------
  async function botPage(root) {
    const error = status('bot-status');
    const form = h('form', { class: 'bot-form', id: 'bot-form', onsubmit: (e) => e.preventDefault() });
    const tryCard = tryPanel();
    const regression = h('div', { id: 'regression-slot' });
    const versions = h('div', { id: 'versions-slot' });
    root.replaceChildren(
      pageHead(t('botTitle'), t('botHint')),
      h('div', { class: 'bot-grid' },
        card('bot-editor', null, null, form),
        tryCard),
      regression,
      goldenCard(),
      versions);

    let draft;
    try {
      draft = await ctx.api('GET', '/v1/console/bot/draft');
    } catch (err) {
      form.replaceChildren(missing(err) ? unavailable('bot-unavailable') : h('p', { class: 'ostatus error' }, err.message));
      return;
    }
    const f = {
      instructions: h('textarea', { id: 'instructions', rows: '7', maxlength: '4000' }),
      greeting: h('textarea', { id: 'greeting', rows: '2', maxlength: '500' }),
      locale: h('select', { id: 'locale' }, ['id', 'en'].map((v) => h('option', { value: v }, t(`locale_${v}`)))),
      style: h('select', { id: 'answer-style' }, ['short', 'normal'].map((v) => h('option', { value: v }, t(`style_${v}`)))),
      keywords: h('input', { id: 'keywords', placeholder: 'komplain, refund, admin' }),
      hoursOn: h('input', { id: 'hours-on', type: 'checkbox' }),
      timezone: h('input', { id: 'timezone', placeholder: 'Asia/Jakarta' }),
      days: [0, 1, 2, 3, 4, 5, 6].map((i) => h('input', { id: `day-${i}`, placeholder: t('dayHint') })),
      holidays: h('input', { id: 'holidays', placeholder: '2026-12-25, 2027-01-01' }),
      followOn: h('input', { id: 'follow-up-on', type: 'checkbox' }),
      followAfter: h('select', { id: 'follow-up-after' }, ['0', '30m', '1h', '2h', '4h', '1d'].map((v) => h('option', { value: v }, t(`after_${v}`)))),
      followQuiet: h('input', { id: 'follow-up-quiet', placeholder: '21:00-08:00' }),
      followMax: h('input', { id: 'follow-up-max', type: 'number', min: '1', max: '14' }),
      followText: h('textarea', { id: 'follow-up-text', rows: '2', maxlength: '1000' }),
    };
    const counter = h('span', { class: 'counter' });
    const count = () => { counter.textContent = `${f.instructions.value.length} / 4000`; };
    f.instructions.addEventListener('input', count);
    const fill = (d) => {
      f.instructions.value = d.instructions || '';
      f.greeting.value = d.greeting || '';
      f.locale.value = d.locale || 'id';
      f.style.value = d.answer_style || 'short';
      f.keywords.value = (d.handoff_keywords || []).join(', ');
      const hours = d.business_hours;
      f.hoursOn.checked = Boolean(hours);
      f.timezone.value = (hours && hours.timezone) || '';
      f.days.forEach((input, i) => { input.value = (hours && hours.days && hours.days[i]) || ''; });
      f.holidays.value = ((hours && hours.holidays) || []).join(', ');
      hoursBox.classList.toggle('off', !f.hoursOn.checked);
      const follow = d.follow_up;
      f.followOn.checked = Boolean(follow);
      const after = (follow && follow.after) || '2h';
      if (![...f.followAfter.options].some((o) => o.value === after)) f.followAfter.append(h('option', { value: after }, after));
      f.followAfter.value = after;
      f.followQuiet.value = follow ? follow.quiet_hours : '21:00-08:00';
      f.followMax.value = String(follow ? follow.max_per_week : 2);
      f.followText.value = (follow && follow.text) || '';
      followBox.classList.toggle('off', !f.followOn.checked);
      count();
    };
    const read = () => {
      const list = (value) => value.split(',').map((x) => x.trim()).filter(Boolean);
      return {
        instructions: f.instructions.value,
        greeting: f.greeting.value,
        locale: f.locale.value,
        answer_style: f.style.value,
        handoff_keywords: list(f.keywords.value),
        business_hours: f.hoursOn.checked
          ? { timezone: f.timezone.value.trim(), days: f.days.map((d) => d.value.trim()), holidays: list(f.holidays.value) }
          : null,
        follow_up: f.followOn.checked
          ? { after: f.followAfter.value, quiet_hours: f.followQuiet.value.trim() || 'off', max_per_week: Number(f.followMax.value) || 0, text: f.followText.value.trim() }
          : null,
      };
    };
    const hoursBox = h('div', { class: 'hours' },
      h('label', { for: 'timezone' }, t('timezone')), f.timezone,
      h('div', { class: 'days' }, f.days.map((input, i) => h('div', { class: 'day' }, h('label', { for: input.id }, t('days')[i]), input))),
      h('label', { for: 'holidays' }, t('holidays')), f.holidays);
    f.hoursOn.addEventListener('change', () => hoursBox.classList.toggle('off', !f.hoursOn.checked));
    const followBox = h('div', { class: 'hours' },
      h('div', { class: 'two' },
        h('div', {}, h('label', { for: 'follow-up-after' }, t('followUpAfter')), f.followAfter),
        h('div', {}, h('label', { for: 'follow-up-max' }, t('followUpMax')), f.followMax)),
      h('label', { for: 'follow-up-quiet' }, t('followUpQuiet')), f.followQuiet,
      h('label', { for: 'follow-up-text' }, t('followUpText')), f.followText);
    f.followOn.addEventListener('change', () => followBox.classList.toggle('off', !f.followOn.checked));

    const save = async () => {
      try {
        const saved = await ctx.api('PUT', '/v1/console/bot/draft', read());
        fill(saved);
        return true;
      } catch (err) {
        error.error(err.message);
        return false;
      }
    };
    const saveButton = h('button', {
      type: 'button', id: 'save-draft',
      onclick: async () => { error.clear(); saveButton.disabled = true; if (await save()) error.ok(t('draftSaved')); saveButton.disabled = false; },
    }, t('saveDraft'));
    const regressionButton = h('button', {
      type: 'button', id: 'run-regression',
      onclick: async () => {
        error.clear();
        regressionButton.disabled = true;
        try {
          if (!(await save())) return;
          const report = await ctx.api('POST', '/v1/console/bot/draft/regression', {});
          regression.replaceChildren(regressionCard(report));
        } catch (err) {
          regression.replaceChildren(missing(err)
            ? card('regression', t('regressionTitle'), null, unavailable('regression-unavailable'))
            : card('regression', t('regressionTitle'), null, h('p', { class: 'ostatus error' }, err.message)));
        } finally {
          regressionButton.disabled = false;
        }
        regression.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
      },
    }, t('runRegression'));
    const publish = async (confirm) => {
      error.clear();
      publishButton.disabled = true;
      try {
        if (!(await save())) return;
        const done = await ctx.api('POST', '/v1/console/bot/publish', confirm ? { confirm: true } : {});
        regression.replaceChildren();
        error.ok(`${t('published')} ${done.version}.`);
        loadVersions();
      } catch (err) {
        const e = err.data && err.data.error;
        if (err.status === 409 && e && e.code === 'regression_failures') {
          const report = err.data.regression || err.data.report || err.data;
          regression.replaceChildren(regressionCard(report, () => publish(true)));
          regression.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
        } else {
          error.error(err.message);
        }
      } finally {
        publishButton.disabled = false;
      }
    };
    const publishButton = h('button', { type: 'button', class: 'primary', id: 'publish', onclick: () => publish(false) }, t('publish'));

    form.replaceChildren(
      h('div', { class: 'label-row' }, h('label', { for: 'instructions' }, t('instructions')), counter),
      f.instructions, h('p', { class: 'hint' }, t('instructionsHint')),
      h('label', { for: 'greeting' }, t('greeting')), f.greeting, h('p', { class: 'hint' }, t('greetingHint')),
      h('div', { class: 'two' },
        h('div', {}, h('label', { for: 'locale' }, t('locale')), f.locale),
        h('div', {}, h('label', { for: 'answer-style' }, t('style')), f.style)),
      h('label', { for: 'keywords' }, t('keywords')), f.keywords, h('p', { class: 'hint' }, t('keywordsHint')),
      h('details', { class: 'hours-box', open: Boolean(draft.business_hours) }, h('summary', {}, t('hours')),
        h('label', { class: 'check', for: 'hours-on' }, f.hoursOn, t('hoursOn')), hoursBox),
      h('details', { class: 'hours-box', id: 'follow-up-box', open: Boolean(draft.follow_up) }, h('summary', {}, t('followUp')),
        h('label', { class: 'check', for: 'follow-up-on' }, f.followOn, t('followUpOn')), followBox),
      error,
      h('div', { class: 'form-actions' }, saveButton, regressionButton, publishButton));
    fill(draft);

    /** What the draft did, in the owner's language where the kind is known (the detail in English otherwise). */
    function gotText(f2) {
      const key = `kind_${f2.got_kind || ''}`;
      const known = f2.got_kind && t(key) !== key;
      if (!known) return String(f2.got ?? '');
      // An answer from another document: name it.
      const from = /^answered from (\S+)/.exec(String(f2.got || ''));
      return from ? `${t(key)} · ${from[1]}` : t(key);
    }

    /** The regression report: newly failing first; with `onConfirm`, publishing needs a yes. */
    function regressionCard(report, onConfirm) {
      const r = report || {};
      const failing = r.newly_failing || [];
      const score = (name, x) => h('div', { class: 'score' }, h('span', {}, t(name)),
        h('b', {}, `${number(x && x.passed)} ${t('passed')}`), h('span', { class: (x && x.failed) ? 'bad' : 'muted' }, `${number(x && x.failed)} ${t('failed')}`));
      const list = failing.length
        ? h('ol', { class: 'failing', id: 'newly-failing' }, failing.map((f2) => h('li', {},
          h('b', {}, f2.question),
          h('div', { class: 'expect' }, h('span', {}, t('expected')), String(f2.expected ?? '')),
          h('div', { class: 'got', title: String(f2.got ?? '') }, h('span', {}, t('got')), gotText(f2)))))
        : h('p', { class: 'ostatus ok' }, t('noNewFailures'));
      const confirm = onConfirm && failing.length ? h('div', { class: 'confirm', id: 'publish-confirm', role: 'alertdialog' },
        h('b', {}, t('confirmTitle')),
        h('p', {}, `${failing.length} ${t('confirmHint')}`),
        h('div', { class: 'form-actions' },
          h('button', { type: 'button', id: 'publish-cancel', onclick: () => regression.replaceChildren() }, t('cancel')),
          h('button', { type: 'button', class: 'danger', id: 'publish-anyway', onclick: onConfirm }, t('publishAnyway')))) : null;
      return card('regression', t('regressionTitle'), t('regressionHint'),
        confirm,
        failing.length ? h('h3', {}, t('newlyFailing')) : null,
        list,
        h('div', { class: 'scores' }, score('draft', r.draft), score('live', r.live)));
    }

    async function loadVersions() {
      let data;
      try {
        data = await ctx.api('GET', '/v1/console/bot/versions');
      } catch (err) {
        versions.replaceChildren(card('versions', t('versions'), null, missing(err) ? unavailable('versions-unavailable') : h('p', { class: 'ostatus error' }, err.message)));
        return;
      }
      const items = (data.versions || []).map((v) => {
        const show = (x) => {
          if (x === null || x === undefined || x === '') return t('empty');
          if (Array.isArray(x)) return x.length ? x.join(', ') : t('empty');
          if (typeof x === 'object' && Array.isArray(x.days)) {
            const days = x.days.map((d, i) => `${t('days')[i].slice(0, 3)} ${d || '–'}`).join(', ');
            return `${x.timezone || 'Asia/Jakarta'}: ${days}${x.holidays && x.holidays.length ? ` · ${x.holidays.join(', ')}` : ''}`;
          }
          if (typeof x === 'object') return JSON.stringify(x);
          return String(x);
        };
        const blank = (x) => x === null || x === undefined || x === '' || (Array.isArray(x) && !x.length);
        // Only real changes; a field that was or became empty shows one side.
        const changes = (v.diff || []).filter((d) => show(d.before) !== show(d.after));
        const diff = changes.length
          ? h('dl', { class: 'diff' }, changes.flatMap((d) => [
            h('dt', {}, t(`field_${d.field}`)),
            h('dd', {}, blank(d.before) ? null : h('del', {}, show(d.before)), blank(d.after) ? null : h('ins', {}, show(d.after)))]))
          : h('p', { class: 'muted' }, t('noDiff'));
        const restoreButton = v.live ? null : confirmButton({ class: 'small', 'data-restore': v.version }, t('restore'), async () => {
          try {
            const done = await ctx.api('POST', `/v1/console/bot/versions/${encodeURIComponent(v.version)}/restore`, {});
            error.ok(`${t('restored')} ${done.version}.`);
            const d = await ctx.api('GET', '/v1/console/bot/draft');
            fill(d);
            loadVersions();
          } catch (err) {
            error.error(err.message);
          }
        });
        return h('li', { 'data-version': v.version },
          h('div', { class: 'version-head' },
            h('b', {}, `v${v.version}`), v.live ? h('span', { class: 'tag good current' }, t('live')) : null,
            h('span', { class: 'muted' }, `${fmtDate(v.created_at)} · ${t('by')} ${v.author}`),
            // The regression check stored with the version when it was published.
            v.regression && v.regression.draft
              ? h('span', { class: `tag ${(v.regression.newly_failing || []).length ? 'bad' : 'good'} regression-tag`, title: t('regressionTitle') },
                `${t('regressionTitle')}: ${number(v.regression.draft.passed)}/${number((v.regression.draft.passed || 0) + (v.regression.draft.failed || 0))}`)
              : null,
            restoreButton),
          v.note ? h('p', { class: 'muted note' }, v.note) : null,
          diff);
      });
      versions.replaceChildren(card('versions', t('versions'), null,
        items.length ? h('ol', { class: 'versions' }, items) : h('p', { class: 'muted' }, t('noVersions'))));
    }
    loadVersions();
  }

  function tryPanel() {
    const log = h('div', { class: 'try-log', id: 'try-log', 'aria-live': 'polite' }, h('p', { class: 'try-empty' }, t('tryEmpty')));
    const input = h('input', { id: 'try-text', placeholder: t('tryPlaceholder'), maxlength: '1000', autocomplete: 'off' });
    const send = h('button', { class: 'primary', type: 'submit', id: 'try-send' }, t('ask'));
    const form = h('form', {
      class: 'try-form',
      onsubmit: async (e) => {
        e.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        send.disabled = true;
        const empty = log.querySelector('.try-empty');
        if (empty) empty.remove();
        log.append(h('div', { class: 'bubble me' }, text));
        input.value = '';
        const pending = h('div', { class: 'bubble bot pending' }, t('loading'));
        log.append(pending);
        log.scrollTop = log.scrollHeight;
        try {
          const res = await ctx.api('POST', '/v1/console/bot/draft/try', { text });
          const cites = res.citations || [];
          pending.replaceWith(h('div', { class: 'bubble bot', 'data-kind': res.kind || '' },
            h('span', { class: 'kind' }, t(`kind_${res.kind}`)),
            h('div', { class: 'reply' }, res.reply || ''),
            h('div', { class: 'cites' }, h('small', {}, cites.length ? t('sources') : t('noSources')),
              cites.map((c) => h('blockquote', {}, h('b', {}, c.title || c.id), h('span', {}, c.text)))),
            goldenButton(text, res)));
        } catch (err) {
          pending.replaceWith(h('div', { class: 'bubble bot failed' }, missing(err) ? t('notAvailable') : err.message));
        } finally {
          send.disabled = false;
          log.scrollTop = log.scrollHeight;
          input.focus();
        }
      },
    }, input, send);
    return card('try', t('tryTitle'), t('tryHint'), log, form);
  }

  /** Redraws the golden set's card (after a question was added elsewhere on the page). */
  let reloadGolden = () => {};

  /** The golden set: its questions, JSONL export (the `sapa kb eval` format) and import. */
  function goldenCard() {
    const slot = h('div', { id: 'golden-slot' }, h('p', { class: 'muted' }, t('loading')));
    const note = status('golden-status');
    const file = h('input', { type: 'file', id: 'golden-file', accept: '.jsonl,.json,application/x-ndjson', class: 'visually-hidden' });
    const load = async () => {
      try {
        const data = await ctx.api('GET', '/v1/console/golden');
        const cases = data.cases || [];
        slot.replaceChildren(cases.length
          ? h('details', { class: 'golden-list' },
            h('summary', {}, `${number(cases.length)} ${t('goldenCount')}`),
            h('ul', {}, cases.map((c) => h('li', {}, h('span', {}, c.query), h('small', {}, c.abstain ? t('expectsAbstain') : `→ ${c.doc}`)))))
          : h('p', { class: 'muted', id: 'golden-empty' }, t('goldenEmpty')));
      } catch (err) {
        slot.replaceChildren(missing(err) ? unavailable('golden-unavailable') : h('p', { class: 'ostatus error' }, err.message));
      }
    };
    reloadGolden = load;
    file.addEventListener('change', async () => {
      const chosen = file.files && file.files[0];
      file.value = '';
      if (!chosen) return;
      const lines = (await chosen.text()).split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
      let added = 0;
      const problems = [];
      for (const [i, line] of lines.entries()) {
        try {
          await ctx.api('POST', '/v1/console/golden', JSON.parse(line));
          added += 1;
        } catch (err) {
          problems.push(`${t('line')} ${i + 1}: ${err.message}`);
        }
      }
      if (problems.length) note.error(`${number(added)} ${t('goldenImported')}; ${problems.join(' · ')}`);
      else note.ok(`${number(added)} ${t('goldenImported')}`);
      load();
    });
    load();
    return card('golden', t('goldenTitle'), t('goldenHint'),
      slot,
      h('div', { class: 'form-actions' },
        h('a', { class: 'button small', id: 'golden-export', href: '/v1/console/golden?format=jsonl', download: 'golden.jsonl' }, ctx.icon(DOWNLOAD), ` ${t('exportJsonl')}`),
        h('label', { class: 'button small', for: 'golden-file', id: 'golden-import' }, ctx.icon(UPLOAD), ` ${t('importJsonl')}`),
        file),
      note);
  }

  /**
   * One click adds a question to the golden set with what the bot does with it now: the
   * document its answer cites, or "should not answer" when it found nothing.
   */
  function goldenButton(question, res) {
    const doc = (res.cited_docs || [])[0] || (res.retrieved_docs || [])[0];
    const abstain = !doc && res.kind === 'no_match';
    if (!doc && !abstain) return null;
    const button = h('button', { type: 'button', class: 'add-golden', title: doc ? `${t('expects')} ${doc}` : t('expectsAbstain') }, `+ ${t('addGolden')}`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await ctx.api('POST', '/v1/console/golden', doc ? { query: question, doc } : { query: question, abstain: true });
        button.replaceWith(h('small', { class: 'golden-added' }, `✓ ${t('goldenAdded')}`));
        reloadGolden();
      } catch (err) {
        button.disabled = false;
        button.title = err.message;
      }
    });
    return button;
  }

  // ----- Knowledge ----------------------------------------------------------------------------
  async function knowledgePage(root) {
    const input = h('input', { type: 'file', id: 'file-input', multiple: true, class: 'visually-hidden', accept: '.md,.markdown,.txt,.csv,.html,.htm,.pdf' });
    const uploads = h('ul', { class: 'uploads', id: 'uploads' });
    const formats = h('span', {});
    const drop = h('label', { class: 'dropzone', id: 'dropzone', for: 'file-input' },
      h('span', { class: 'drop-icon' }, ctx.icon(UPLOAD)),
      h('b', {}, t('drop')),
      h('span', {}, `${t('dropOr')} `, h('u', {}, t('choose'))),
      h('small', {}, formats));
    for (const name of ['dragenter', 'dragover']) drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add('over'); });
    for (const name of ['dragleave', 'drop']) drop.addEventListener(name, () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => { e.preventDefault(); uploadAll([...(e.dataTransfer ? e.dataTransfer.files : [])]); });
    input.addEventListener('change', () => { uploadAll([...input.files]); input.value = ''; });
    const list = h('div', { id: 'documents-slot' }, h('p', { class: 'muted' }, t('loading')));
    const docsStatus = status('documents-status');
    root.replaceChildren(
      pageHead(t('kbTitle'), t('kbHint')),
      h('div', { class: 'kb-grid' },
        h('div', {},
          card('upload', null, null, input, drop, uploads),
          card('documents', t('documents'), null, docsStatus, list)),
        searchCard()));

    let info = { max_upload_bytes: 0 };
    async function load() {
      try {
        info = await ctx.api('GET', '/v1/console/knowledge/documents');
      } catch (err) {
        list.replaceChildren(missing(err) ? unavailable('documents-unavailable') : h('p', { class: 'ostatus error' }, err.message));
        return;
      }
      formats.textContent = `${t('dropHint')}: ${info.formats || ''} · ${t('perFile')} ${bytes(info.max_upload_bytes || 0)}`;
      const docs = info.documents || [];
      if (!docs.length) { list.replaceChildren(h('p', { class: 'empty-note' }, t('noDocuments'))); return; }
      list.replaceChildren(h('ul', { class: 'docs', id: 'document-list' }, docs.map(docRow)));
    }

    function docRow(d) {
      const chunks = h('div', { class: 'chunks', hidden: true });
      const replaceInput = h('input', { type: 'file', class: 'visually-hidden', id: `replace-${d.id}` });
      replaceInput.addEventListener('change', async () => {
        const file = replaceInput.files[0];
        if (file) await uploadOne(file, `/v1/console/knowledge/documents/${encodeURIComponent(d.id)}`, 'PUT');
        replaceInput.value = '';
        load();
      });
      const previewButton = h('button', {
        type: 'button', class: 'small', 'data-preview': d.name,
        onclick: async () => {
          if (!chunks.hidden) { chunks.hidden = true; previewButton.textContent = t('preview'); return; }
          chunks.hidden = false;
          previewButton.textContent = t('hidePreview');
          chunks.replaceChildren(h('p', { class: 'muted' }, t('loading')));
          try {
            const data = await ctx.api('GET', `/v1/console/knowledge/documents/${encodeURIComponent(d.id)}/chunks`);
            chunks.replaceChildren(h('ol', {}, data.chunks.map((c) => h('li', {},
              c.heading_path && c.heading_path.length ? h('b', {}, c.heading_path.join(' › ')) : null,
              h('p', {}, c.text)))));
          } catch (err) {
            chunks.replaceChildren(h('p', { class: 'ostatus error' }, err.message));
          }
        },
      }, t('preview'));
      const dates = d.created_at
        ? `${t('uploaded')} ${fmtDate(d.created_at, false)}${d.updated_at && d.updated_at !== d.created_at ? ` · ${t('updated')} ${fmtDate(d.updated_at, false)}` : ''}`
        : '';
      return h('li', { class: 'doc', 'data-name': d.name },
        h('div', { class: 'doc-main' },
          h('span', { class: 'doc-icon' }, ctx.icon(DOC)),
          h('div', { class: 'doc-text' },
            h('b', {}, d.name),
            h('span', { class: 'muted' }, h('b', { class: 'count-inline' }, `${number(d.chunks)} ${t('chunks')}`),
              [d.title !== d.name ? d.title : null, dates].filter(Boolean).map((x) => ` · ${x}`).join('')))),
        h('div', { class: 'doc-actions' },
          previewButton,
          replaceInput,
          h('label', { class: 'button small', for: replaceInput.id }, t('replace')),
          confirmButton({ class: 'small danger-text', 'data-delete': d.name }, t('delete'), async () => {
            try {
              await ctx.api('DELETE', `/v1/console/knowledge/documents/${encodeURIComponent(d.id)}`);
              docsStatus.ok(`${t('deleted')}: ${d.name}`);
              load();
            } catch (err) {
              docsStatus.error(err.message);
            }
          })),
        chunks);
    }

    /** Uploads one file with a progress bar; resolves when the server has indexed it. */
    function uploadOne(file, url, method) {
      const bar = h('progress', { max: '100', value: '0' });
      const state = h('span', { class: 'up-state' }, t('uploading'));
      const row = h('li', { 'data-file': file.name }, h('div', { class: 'up-top' }, h('b', {}, file.name), h('span', { class: 'muted' }, bytes(file.size))), bar, state);
      uploads.prepend(row);
      return new Promise((resolve) => {
        const xhr = new XMLHttpRequest();
        xhr.open(method, `${url}?name=${encodeURIComponent(file.name)}`);
        xhr.setRequestHeader('x-csrf-token', ctx.csrf());
        xhr.setRequestHeader('accept', 'application/json');
        xhr.upload.addEventListener('progress', (e) => {
          if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
        });
        xhr.upload.addEventListener('load', () => { bar.value = 100; state.textContent = t('indexing'); });
        xhr.addEventListener('load', () => {
          let data = null;
          try { data = JSON.parse(xhr.responseText); } catch { data = null; }
          if (xhr.status >= 200 && xhr.status < 300) {
            row.classList.add('done');
            const chunks = data && data.document ? ` · ${number(data.document.chunks)} ${t('chunks')}` : '';
            state.textContent = `${t(`outcome_${data && data.outcome}`)}${chunks}`;
          } else {
            row.classList.add('failed');
            state.textContent = (data && data.error && data.error.message) || (xhr.status === 404 ? t('notAvailable') : `HTTP ${xhr.status}`);
          }
          bar.value = 100;
          resolve();
        });
        xhr.addEventListener('error', () => { row.classList.add('failed'); state.textContent = 'network error'; resolve(); });
        xhr.send(file);
      });
    }

    async function uploadAll(files) {
      // One at a time: the server has one index writer, and each row shows its own progress.
      for (const file of files) {
        if (info.max_upload_bytes && file.size > info.max_upload_bytes) {
          uploads.prepend(h('li', { class: 'failed', 'data-file': file.name }, h('div', { class: 'up-top' }, h('b', {}, file.name), h('span', { class: 'muted' }, bytes(file.size))),
            h('span', { class: 'up-state' }, `${t('perFile')} ${bytes(info.max_upload_bytes)}`)));
          continue;
        }
        await uploadOne(file, '/v1/console/knowledge/documents', 'POST');
      }
      load();
    }

    load();
  }

  function searchCard() {
    const input = h('input', { id: 'search-q', type: 'search', placeholder: t('searchPlaceholder'), autocomplete: 'off' });
    const results = h('div', { id: 'search-results' });
    const button = h('button', { class: 'primary', type: 'submit', id: 'search-go' }, t('search'));
    const form = h('form', {
      class: 'inline-form',
      onsubmit: async (e) => {
        e.preventDefault();
        const q = input.value.trim();
        if (!q) return;
        button.disabled = true;
        try {
          const data = await ctx.api('GET', `/v1/console/knowledge/search?q=${encodeURIComponent(q)}&limit=5`);
          const min = Number(data.min_relevance || 0);
          const items = (data.results || []).map((r, i) => h('li', { class: r.answerable ? 'ok' : 'low' },
            h('div', { class: 'hit-head' },
              h('span', { class: 'rank' }, String(i + 1)),
              h('b', {}, [r.document_name, ...(r.heading_path || []).slice(1)].join(' › ')),
              h('span', { class: `tag ${r.answerable ? 'good' : 'warn'}` }, r.answerable ? t('answerable') : t('belowThreshold'))),
            h('p', {}, r.text),
            h('div', { class: 'meter' },
              h('progress', { max: '100', value: String(Math.round(Number(r.relevance) * 100)), class: r.answerable ? 'ok' : 'low' }),
              h('span', {}, `${t('relevance')} ${number(r.relevance, 2)} · score ${number(r.score, 3)}`))));
          results.replaceChildren(
            h('p', { class: 'threshold', id: 'threshold' }, `${t('threshold')} ${number(min, 2)}`),
            items.length ? h('ol', { class: 'hits' }, items) : h('p', { class: 'empty-note' }, t('noResults')));
        } catch (err) {
          results.replaceChildren(missing(err) ? unavailable('search-unavailable') : h('p', { class: 'ostatus error' }, err.message));
        } finally {
          button.disabled = false;
        }
      },
    }, input, button);
    return card('playground', t('searchTitle'), t('searchHint'), form, results);
  }

  // ----- Unanswered ---------------------------------------------------------------------------
  async function unansweredPage(root) {
    const list = h('div', { id: 'unanswered-slot' }, h('p', { class: 'muted' }, t('loading')));
    const note = status('unanswered-status');
    const csv = h('a', { class: 'button', id: 'export-csv', href: '/v1/console/unanswered?format=csv', download: 'unanswered.csv' }, ctx.icon(DOWNLOAD), ` ${t('exportCsv')}`);
    root.replaceChildren(pageHead(t('unTitle'), t('unHint'), csv), note, list);

    async function load() {
      let data;
      try {
        data = await ctx.api('GET', '/v1/console/unanswered');
      } catch (err) {
        list.replaceChildren(missing(err) ? unavailable('unanswered-unavailable') : h('p', { class: 'ostatus error' }, err.message));
        return;
      }
      const groups = data.groups || [];
      if (!groups.length) { list.replaceChildren(card('unanswered', null, null, h('p', { class: 'empty-note', id: 'no-unanswered' }, t('noUnanswered')))); return; }
      list.replaceChildren(h('ul', { class: 'groups', id: 'groups' }, groups.map(groupRow)));
    }

    function groupRow(g) {
      const answer = h('textarea', { id: `answer-${g.id}`, rows: '3', maxlength: '2000' });
      const save = h('button', { class: 'primary', type: 'submit', 'data-save': g.id }, t('saveAnswer'));
      const form = h('form', {
        class: 'answer-form', hidden: true,
        onsubmit: async (e) => {
          e.preventDefault();
          if (!answer.value.trim()) { answer.focus(); return; }
          save.disabled = true;
          try {
            await ctx.api('POST', `/v1/console/unanswered/${encodeURIComponent(g.id)}/answer`, { answer: answer.value.trim() });
            note.ok(`${t('answered')} “${g.question}”`);
            load();
          } catch (err) {
            note.error(err.message);
          } finally {
            save.disabled = false;
          }
        },
      }, h('label', { for: answer.id }, t('yourAnswer')), answer, h('p', { class: 'hint' }, t('answerHint')),
      h('div', { class: 'form-actions' }, h('button', { type: 'button', onclick: () => { form.hidden = true; } }, t('cancel')), save));
      const links = (g.conversation_ids || []).slice(0, 5).map((id, i) => h('a', { href: `/console?conversation=${encodeURIComponent(id)}`, class: 'conv-link' }, `${t('conversation')} ${i + 1}`));
      return h('li', { class: 'group', 'data-id': g.id },
        h('div', { class: 'group-main' },
          h('span', { class: 'count', title: t('asked') }, `${number(g.count)}×`),
          h('div', { class: 'group-text' },
            h('b', {}, g.question),
            h('span', { class: 'muted' }, `${number(g.count)} ${t('asked')} · ${t('lastSeen')} ${ago(g.last_seen)}`),
            links.length ? h('div', { class: 'links' }, links) : null),
          h('div', { class: 'group-actions' },
            h('button', { type: 'button', class: 'primary small', 'data-answer': g.id, onclick: () => { form.hidden = false; answer.focus(); } }, t('answerIt')),
            confirmButton({ class: 'small', 'data-dismiss': g.id }, t('dismiss'), async () => {
              try {
                await ctx.api('POST', `/v1/console/unanswered/${encodeURIComponent(g.id)}/dismiss`, {});
                note.ok(t('dismissed'));
                load();
              } catch (err) {
                note.error(err.message);
              }
            }))),
        form);
    }
    load();
  }

  // ----- Usage --------------------------------------------------------------------------------
  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs = {}, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
    for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  /** Round axis maximum: 1, 2, 5 × 10^n at or above `max`. */
  function niceMax(max) {
    // Four gridlines at a round step (1, 2 or 5 times a power of ten): whole numbers for counts.
    if (max <= 4) return 4;
    const raw = max / 4;
    const p = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * m * p;
    return 40 * p;
  }

  /**
   * A bar chart (stacked series) or a line chart, as inline SVG built with DOM calls.
   * `series`: [{ name, cls, values }]; `format` labels the y axis.
   */
  function chart({ id, labels, series, kind = 'bars', width, height = 220, format = (v) => number(v), max: fixedMax }) {
    const pad = { l: 44, r: 12, t: 12, b: 28 };
    const w = Math.max(280, width);
    const iw = w - pad.l - pad.r;
    const ih = height - pad.t - pad.b;
    const n = labels.length || 1;
    const totals = labels.map((_, i) => (kind === 'bars' ? series.reduce((a, x) => a + (x.values[i] || 0), 0) : Math.max(...series.map((x) => x.values[i] || 0))));
    const max = fixedMax || niceMax(Math.max(0, ...totals));
    const y = (v) => pad.t + ih - (v / max) * ih;
    const svg = s('svg', { class: `chart ${kind}`, id, viewBox: `0 0 ${w} ${height}`, width: w, height, role: 'img', 'aria-label': series.map((x) => x.name).join(', ') });
    for (let k = 0; k <= 4; k += 1) {
      const v = (max / 4) * k;
      svg.append(s('line', { class: 'grid', x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v) }));
      svg.append(s('text', { class: 'axis', x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
    }
    const step = iw / n;
    const every = Math.ceil(n / Math.max(1, Math.floor(iw / 56)));
    labels.forEach((label, i) => {
      if (i % every === 0) svg.append(s('text', { class: 'axis', x: pad.l + step * i + step / 2, y: height - 8, 'text-anchor': 'middle' }, label));
    });
    if (kind === 'bars') {
      const bw = Math.max(2, Math.min(28, step * 0.7));
      labels.forEach((label, i) => {
        let base = 0;
        for (const x of series) {
          const v = x.values[i] || 0;
          if (v > 0) {
            const top = y(base + v);
            svg.append(s('rect', { class: x.cls, x: pad.l + step * i + (step - bw) / 2, y: top, width: bw, height: Math.max(0.5, y(base) - top), rx: 2 },
              s('title', {}, `${label} · ${x.name}: ${format(v)}`)));
          }
          base += v;
        }
      });
    } else {
      for (const x of series) {
        const points = x.values.map((v, i) => `${pad.l + step * i + step / 2},${y(v || 0)}`).join(' ');
        svg.append(s('polyline', { class: `line ${x.cls}`, points, fill: 'none' }));
        x.values.forEach((v, i) => svg.append(s('circle', { class: `dot ${x.cls}`, cx: pad.l + step * i + step / 2, cy: y(v || 0), r: n > 40 ? 1.5 : 3 },
          s('title', {}, `${labels[i]} · ${x.name}: ${format(v || 0)}`))));
      }
    }
    return svg;
  }

  function legend(series) {
    return h('div', { class: 'legend' }, series.map((x) => h('span', {}, h('i', { class: x.cls }), x.name)));
  }

  function isoDay(d) {
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  }

  async function usagePage(root) {
    const range = Number(sessionStorage.getItem('sapa.usage.range')) || 30;
    const body = h('div', { id: 'usage-slot' }, h('p', { class: 'muted' }, t('loading')));
    // Days are the tenant's local dates (the server says which day it is there); ask for one
    // more day on each side of the browser's dates, then keep the tenant's last `range` days.
    const local = new Date();
    const asked = `from=${isoDay(new Date(local.getFullYear(), local.getMonth(), local.getDate() - range))}&to=${isoDay(new Date(local.getFullYear(), local.getMonth(), local.getDate() + 1))}`;
    const csv = h('a', { class: 'button', id: 'usage-csv', href: '#', download: 'usage.csv' }, ctx.icon(DOWNLOAD), ` CSV`);
    const ranges = h('div', { class: 'segmented', role: 'group' }, [7, 30, 90].map((d) => h('button', {
      type: 'button', 'data-range': d, 'aria-pressed': String(d === range),
      onclick: () => { sessionStorage.setItem('sapa.usage.range', String(d)); usagePage(root); },
    }, `${d} ${ctx.lang === 'en' ? 'days' : 'hari'}`)));
    root.replaceChildren(pageHead(t('usageTitle'), t('usageHint'), ranges, csv), body);

    let data;
    try {
      data = await ctx.api('GET', `/v1/console/usage?${asked}`);
    } catch (err) {
      csv.hidden = true;
      ranges.hidden = true;
      body.replaceChildren(missing(err) ? unavailable('usage-unavailable') : h('p', { class: 'ostatus error' }, err.message));
      return;
    }
    // One column per calendar day in the range (days without rows count zero), channels summed.
    const [ty, tm, td] = (typeof data.today === 'string' ? data.today : isoDay(local)).split('-').map(Number);
    const today = new Date(ty, tm - 1, td);
    const from = new Date(ty, tm - 1, td - (range - 1));
    const query = `from=${isoDay(from)}&to=${isoDay(today)}`;
    csv.href = `/v1/console/usage?${query}&format=csv`;
    csv.download = `usage-${isoDay(from)}-${isoDay(today)}.csv`;
    const dates = [];
    for (let d = new Date(from); d <= today; d.setDate(d.getDate() + 1)) dates.push(isoDay(d));
    const rows = (data.days || []).filter((r) => r.date >= dates[0] && r.date <= dates[dates.length - 1]);
    const byDay = new Map(dates.map((d) => [d, { messages_in: 0, messages_out: 0, conversations: 0, handoffs: 0, prompt_tokens: 0, completion_tokens: 0, cost: 0, answered: 0, abstained: 0, turns: 0 }]));
    const channels = new Map();
    for (const r of rows) {
      const day = byDay.get(r.date);
      const ch = channels.get(r.channel) || { messages_in: 0, messages_out: 0, conversations: 0, handoffs: 0, cost: 0 };
      for (const k of ['messages_in', 'messages_out', 'conversations', 'handoffs', 'cost']) ch[k] += Number(r[k] || 0);
      channels.set(r.channel, ch);
      if (!day) continue;
      for (const k of ['messages_in', 'messages_out', 'conversations', 'handoffs', 'prompt_tokens', 'completion_tokens', 'cost']) day[k] += Number(r[k] || 0);
      // Rates from the counts (`answer_turns`, `answered`, `abstained`) where the server gives
      // them, else weighted by the customer messages of each channel.
      const turns = r.answer_turns !== undefined ? Number(r.answer_turns || 0) : Number(r.messages_in || 0);
      day.turns += turns;
      day.answered += r.answered !== undefined ? Number(r.answered || 0) : Number(r.answer_rate || 0) * turns;
      day.abstained += r.abstained !== undefined ? Number(r.abstained || 0) : Number(r.abstain_rate || 0) * turns;
    }
    const days = dates.map((d) => byDay.get(d));
    const sum = (k) => days.reduce((a, d) => a + d[k], 0);
    const totalIn = sum('messages_in');
    const totalTurns = sum('turns');
    const answerRate = totalTurns ? sum('answered') / totalTurns : 0;
    const p50s = rows.map((r) => Number(r.first_response_p50_ms)).filter((v) => Number.isFinite(v) && v > 0).sort((a, b) => a - b);
    const p50 = p50s.length ? p50s[Math.floor(p50s.length / 2)] : null;

    const q = data.quota || null;
    const banner = q && (q.exceeded || q.warning)
      ? h('div', { class: `quota-banner ${q.exceeded ? 'exceeded' : 'warning'}`, id: 'quota-banner', role: 'alert' }, ctx.icon(INFO), h('span', {}, q.exceeded ? t('quotaExceeded') : t('quotaWarning')))
      : null;
    const kpi = (label, value, id) => h('div', { class: 'kpi', id }, h('span', {}, label), h('b', {}, value));
    const labels = dates.map((d) => { const [, m, dd] = d.split('-'); return `${Number(dd)}/${Number(m)}`; });
    const slots = { messages: h('div', { class: 'chart-box' }), rate: h('div', { class: 'chart-box' }), tokens: h('div', { class: 'chart-box' }) };
    const seriesMessages = [{ name: t('messagesIn'), cls: 's1', values: days.map((d) => d.messages_in) }, { name: t('messagesOut'), cls: 's2', values: days.map((d) => d.messages_out) }];
    const seriesRate = [
      { name: t('answerRate'), cls: 's1', values: days.map((d) => (d.turns ? (d.answered / d.turns) * 100 : 0)) },
      { name: t('abstainRate'), cls: 's3', values: days.map((d) => (d.turns ? (d.abstained / d.turns) * 100 : 0)) }];
    const seriesTokens = [{ name: t('promptTokens'), cls: 's2', values: days.map((d) => d.prompt_tokens) }, { name: t('completionTokens'), cls: 's1', values: days.map((d) => d.completion_tokens) }];
    const draw = () => {
      const width = (slot) => Math.floor(slot.clientWidth || 600);
      slots.messages.replaceChildren(chart({ id: 'chart-messages', labels, series: seriesMessages, width: width(slots.messages) }));
      slots.rate.replaceChildren(chart({ id: 'chart-rate', labels, series: seriesRate, kind: 'line', width: width(slots.rate), max: 100, format: (v) => `${number(v)}%` }));
      slots.tokens.replaceChildren(chart({ id: 'chart-tokens', labels, series: seriesTokens, width: width(slots.tokens), format: (v) => (v >= 1000 ? `${number(v / 1000, v >= 10000 ? 0 : 1)}k` : number(v)) }));
    };
    const channelRows = [...channels.entries()].sort((a, b) => b[1].messages_in - a[1].messages_in);
    body.replaceChildren(...[
      banner,
      h('div', { class: 'kpis' },
        kpi(t('messagesIn'), number(totalIn), 'kpi-in'),
        kpi(t('messagesOut'), number(sum('messages_out')), 'kpi-out'),
        kpi(t('conversations'), number(sum('conversations')), 'kpi-conversations'),
        kpi(t('answerRate'), `${number(answerRate * 100)}%`, 'kpi-answer-rate'),
        kpi(t('handoffs'), number(sum('handoffs')), 'kpi-handoffs'),
        kpi(t('cost'), number(sum('cost'), 2), 'kpi-cost')),
      rows.length ? null : h('p', { class: 'empty-note' }, t('noData')),
      card('usage-messages', t('perDay'), null, legend(seriesMessages), slots.messages),
      h('div', { class: 'two-cards' },
        card('usage-rate', t('answerChart'), p50 ? `${t('firstResponse')}: ${p50 < 1000 ? `${number(p50)} ms` : `${number(p50 / 1000, 1)} s`}` : null, legend(seriesRate), slots.rate),
        card('usage-tokens', t('tokensChart'), null, legend(seriesTokens), slots.tokens)),
      channelRows.length ? card('usage-channels', t('byChannel'), null, h('table', { class: 'otable' },
        h('thead', {}, h('tr', {}, [t('channel'), t('messagesIn'), t('messagesOut'), t('conversations'), t('handoffs')].map((x) => h('th', {}, x)))),
        h('tbody', {}, channelRows.map(([name, c]) => h('tr', {}, h('td', {}, h('span', { class: `badge ${['whatsapp', 'telegram', 'webchat'].includes(name) ? name : 'other'}` }, name)),
          h('td', {}, number(c.messages_in)), h('td', {}, number(c.messages_out)), h('td', {}, number(c.conversations)), h('td', {}, number(c.handoffs))))))) : null,
      q ? quotaCard(q) : null].filter(Boolean));
    draw();
    if ('ResizeObserver' in window) {
      let last = slots.messages.clientWidth;
      let timer = null;
      new ResizeObserver(() => {
        if (slots.messages.clientWidth === last) return;
        last = slots.messages.clientWidth;
        clearTimeout(timer);
        timer = setTimeout(draw, 120);
      }).observe(slots.messages);
    }
  }

  function quotaCard(q) {
    const meter = (label, used, limit, id) => {
      const pct = limit ? Math.min(100, Math.round((used / limit) * 100)) : 0;
      return h('div', { class: 'quota-row', id },
        h('div', { class: 'quota-top' }, h('span', {}, label), h('b', {}, `${number(used)} / ${limit ? number(limit) : t('unlimited')}`)),
        h('progress', { max: '100', value: String(pct), class: pct >= 100 ? 'full' : pct >= 80 ? 'high' : '' }));
    };
    const slot = h('div', { id: 'quota-editor' });
    const c = card('usage-quota', `${t('quota')} ${q.month || ''}`, null,
      meter(t('messages'), q.messages_used, q.messages_limit, 'quota-messages'),
      meter(t('tokens'), q.tokens_used, q.tokens_limit, 'quota-tokens'),
      slot);
    // The limits are editable where the server has the quota endpoint.
    ctx.api('GET', '/v1/console/quota').then((current) => {
      if (!current || typeof current !== 'object') return;
      // `PUT /v1/console/quota` takes both monthly limits; 0 (or empty) is unlimited.
      const keys = ['monthly_messages', 'monthly_llm_tokens'].filter((k) => k in current);
      if (!keys.length) return;
      const note = status('quota-status');
      const inputs = keys.map((k) => h('input', { id: `quota-${k}`, type: 'number', min: '0', step: '1', value: current[k] ? current[k] : '', placeholder: t('unlimited') }));
      const saveButton = h('button', { type: 'submit' }, t('saveQuota'));
      slot.replaceChildren(h('form', {
        class: 'quota-form',
        onsubmit: async (e) => {
          e.preventDefault();
          const body = {};
          keys.forEach((k, i) => { body[k] = inputs[i].value === '' ? 0 : Number(inputs[i].value); });
          saveButton.disabled = true;
          try { await ctx.api('PUT', '/v1/console/quota', body); note.ok(t('quotaSaved')); } catch (err) { note.error(err.message); } finally { saveButton.disabled = false; }
        },
      }, h('div', { class: 'two' }, keys.map((k, i) => h('div', {}, h('label', { for: inputs[i].id }, k === 'monthly_llm_tokens' ? t('tokensLimit') : t('messagesLimit')), inputs[i]))),
      h('div', { class: 'form-actions' }, saveButton), note));
    }).catch(() => { /* read-only without the quota endpoint */ });
    return c;
  }

  // ----- API keys -----------------------------------------------------------------------------
  async function keysPage(root) {
    const list = h('div', { id: 'keys-slot' }, h('p', { class: 'muted' }, t('loading')));
    const note = status('keys-status');
    const secret = h('div', { id: 'secret-slot' });
    const scopes = ['knowledge', 'messages', 'otp'];
    const boxes = scopes.map((name) => h('input', { type: 'checkbox', id: `scope-${name}`, value: name, checked: name === 'knowledge' }));
    const createButton = h('button', { class: 'primary', type: 'submit', id: 'create-key' }, t('create'));
    const form = h('form', {
      class: 'key-form',
      onsubmit: async (e) => {
        e.preventDefault();
        const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
        if (!chosen.length) { note.error(t('chooseScope')); return; }
        createButton.disabled = true;
        note.clear();
        try {
          const made = await ctx.api('POST', '/v1/console/api-keys', { scopes: chosen });
          const value = h('code', { id: 'new-key' }, made.key);
          const copy = h('button', {
            type: 'button', class: 'small', id: 'copy-key',
            onclick: async () => {
              try { await navigator.clipboard.writeText(made.key); copy.textContent = t('copied'); } catch {
                const range = document.createRange();
                range.selectNodeContents(value);
                const sel = getSelection();
                sel.removeAllRanges();
                sel.addRange(range);
              }
            },
          }, t('copy'));
          secret.replaceChildren(h('div', { class: 'secret', role: 'alert' }, h('p', {}, t('secretOnce')), h('div', { class: 'secret-row' }, value, copy)));
          load();
        } catch (err) {
          note.error(missing(err) ? t('notAvailable') : err.message);
        } finally {
          createButton.disabled = false;
        }
      },
    },
    h('fieldset', {}, h('legend', {}, t('scopes')), scopes.map((name, i) => h('label', { class: 'check', for: boxes[i].id }, boxes[i], h('span', {}, h('b', {}, name), ` — ${t(`scope_${name}`)}`)))),
    h('div', { class: 'form-actions' }, createButton));
    root.replaceChildren(pageHead(t('keysTitle'), t('keysHint')), card('new-key-card', t('newKey'), null, form, note, secret), card('keys', t('keysList'), null, list));

    async function load() {
      let data;
      try {
        data = await ctx.api('GET', '/v1/console/api-keys');
      } catch (err) {
        list.replaceChildren(missing(err) ? unavailable('keys-unavailable') : h('p', { class: 'ostatus error' }, err.message));
        return;
      }
      const keys = data.keys || [];
      if (!keys.length) { list.replaceChildren(h('p', { class: 'empty-note' }, t('noKeys'))); return; }
      list.replaceChildren(h('table', { class: 'otable keys', id: 'key-list' },
        h('thead', {}, h('tr', {}, ['', t('scopes'), t('created'), t('lastUsed'), t('status'), ''].map((x) => h('th', {}, x)))),
        h('tbody', {}, keys.map((k) => h('tr', { 'data-prefix': k.prefix, class: k.revoked_at ? 'revoked' : '' },
          h('td', {}, h('code', {}, `sapa_${k.prefix}_…`)),
          h('td', { 'data-label': t('scopes') }, k.scopes.map((x) => h('span', { class: 'tag' }, x))),
          h('td', { 'data-label': t('created') }, fmtDate(k.created_at, false)),
          h('td', { 'data-label': t('lastUsed') }, k.last_used_at ? ago(k.last_used_at) : t('never')),
          h('td', { 'data-label': t('status') }, h('span', { class: `tag ${k.revoked_at ? '' : 'good'}` }, k.revoked_at ? t('revoked') : t('active'))),
          h('td', {}, k.revoked_at ? null : confirmButton({ class: 'small danger-text', 'data-revoke': k.prefix }, t('revoke'), async () => {
            try {
              await ctx.api('POST', `/v1/console/api-keys/${encodeURIComponent(k.prefix)}/revoke`, {});
              load();
            } catch (err) {
              note.error(err.message);
            }
          })))))));
    }
    load();
  }

  // ----- Flows -------------------------------------------------------------------------------
  /** A small valid flow to start from: say, ask, say, end; texts in Indonesian and English. */
  function starterFlow(name) {
    return [
      `name: ${name}`,
      'description: The customer wants to leave a message for the team.',
      'triggers:',
      '  keywords:',
      '    - titip pesan',
      '    - leave a message',
      'steps:',
      '  - say:',
      '      text:',
      '        id: Siap, Kak. Pesannya kami sampaikan ke tim.',
      '        en: Sure, we will pass your message to the team.',
      '  - ask:',
      '      slot: message',
      '      type: text',
      '      prompt:',
      '        id: Apa pesannya?',
      '        en: What is your message?',
      '  - say:',
      '      text:',
      '        id: "Terima kasih, pesan Kakak sudah kami catat: {{ slots.message }}"',
      '        en: "Thank you, we noted your message: {{ slots.message }}"',
      '  - end',
      '',
    ].join('\n');
  }

  async function flowsPage(root) {
    const list = h('div', { id: 'flows-slot' }, h('p', { class: 'muted' }, t('loading')));
    const listStatus = status('flows-status');
    const editorTitle = h('h2', { id: 'flow-title' }, t('flowEditor'));
    const editorHint = h('p', {}, t('flowEditorHint'));
    const gutter = h('pre', { class: 'flow-gutter', 'aria-hidden': 'true' }, '1');
    const source = h('textarea', {
      id: 'flow-source', class: 'flow-source', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', wrap: 'off',
      'aria-label': t('flowYaml'), 'aria-describedby': 'flow-caret', rows: '22',
    });
    const caret = h('span', { id: 'flow-caret', class: 'flow-caret', 'aria-live': 'off' });
    const errors = h('ul', { id: 'flow-errors', class: 'flow-errors', hidden: true });
    const note = status('flow-status');
    const checkButton = h('button', { type: 'button', id: 'flow-check' }, t('flowCheck'));
    const saveButton = h('button', { type: 'button', class: 'primary', id: 'flow-save' }, t('flowSave'));
    let current = null; // the stored flow being edited, or null for a new one
    let names = [];

    const deleteButton = confirmButton({ class: 'danger-text', id: 'flow-delete' }, t('delete'), async () => {
      if (!current) return;
      try {
        await ctx.api('DELETE', `/v1/console/flows/${encodeURIComponent(current)}`);
        listStatus.ok(`${t('deleted')}: ${current}`);
        openNew();
        load();
      } catch (err) {
        note.error(err.message);
      }
    });

    const lines = () => source.value.split('\n');
    function drawGutter() {
      const n = lines().length;
      gutter.textContent = Array.from({ length: n }, (_, i) => String(i + 1)).join('\n');
      gutter.scrollTop = source.scrollTop;
    }
    function drawCaret() {
      const before = source.value.slice(0, source.selectionStart).split('\n');
      caret.textContent = `${t('flowLine')} ${before.length}, ${t('flowColumn')} ${before[before.length - 1].length + 1}`;
    }
    source.addEventListener('input', () => { drawGutter(); drawCaret(); });
    source.addEventListener('scroll', () => { gutter.scrollTop = source.scrollTop; });
    for (const type of ['keyup', 'click', 'select', 'focus']) source.addEventListener(type, drawCaret);

    /** Puts the caret at `line`:`column` (1-based) and scrolls it into view. */
    function goTo(line, column) {
      const all = lines();
      const l = Math.min(Math.max(1, line), all.length);
      let offset = 0;
      for (let i = 0; i < l - 1; i += 1) offset += all[i].length + 1;
      offset += Math.min(Math.max(0, column - 1), all[l - 1].length);
      source.focus();
      source.setSelectionRange(offset, offset);
      const height = parseFloat(getComputedStyle(source).lineHeight) || 20;
      source.scrollTop = Math.max(0, (l - 3) * height);
      gutter.scrollTop = source.scrollTop;
      drawCaret();
    }

    function showErrors(list) {
      errors.replaceChildren(...list.map((e) => h('li', {},
        h('button', {
          type: 'button', class: 'flow-error', 'data-line': e.line, 'data-column': e.column,
          onclick: () => goTo(Number(e.line), Number(e.column)),
        }, `${t('flowLine')} ${e.line}, ${t('flowColumn')} ${e.column}: ${e.message}`))));
      errors.hidden = !list.length;
    }

    /** The server's problems with the document, or null when it is valid. */
    function problems(err) {
      const found = err && err.data && err.data.error && err.data.error.errors;
      return Array.isArray(found) ? found : null;
    }

    async function check() {
      note.clear();
      showErrors([]);
      try {
        return await ctx.api('POST', '/v1/console/flows/check', { source: source.value });
      } catch (err) {
        const found = problems(err);
        if (found) {
          showErrors(found);
          note.error(`${found.length} ${t('flowProblems')}`);
        } else {
          note.error(missing(err) ? t('notAvailable') : err.message);
        }
        return null;
      }
    }

    checkButton.addEventListener('click', async () => {
      checkButton.disabled = true;
      try {
        const ok = await check();
        if (ok) note.ok(`${t('flowValid')} (${ok.steps} ${t('flowSteps')})`);
      } finally {
        checkButton.disabled = false;
      }
    });

    saveButton.addEventListener('click', async () => {
      saveButton.disabled = true;
      try {
        const ok = await check();
        if (!ok) return;
        const saved = await ctx.api('PUT', `/v1/console/flows/${encodeURIComponent(ok.name)}`, { source: source.value });
        const renamed = current && current !== saved.name;
        note.ok(`${t('flowSaved')}: ${saved.name}${renamed ? ` (${t('flowKept')} ${current})` : ''}`);
        openStored(saved.name, source.value);
        load();
      } catch (err) {
        const found = problems(err);
        if (found) showErrors(found);
        note.error(err.message);
      } finally {
        saveButton.disabled = false;
      }
    });

    function openStored(name, text) {
      current = name;
      editorTitle.textContent = name;
      editorHint.textContent = t('flowEditorHint');
      source.value = text;
      deleteButton.hidden = false;
      drawGutter();
      drawCaret();
      markCurrent();
    }

    function openNew() {
      let name = 'new-flow';
      for (let i = 2; names.includes(name); i += 1) name = `new-flow-${i}`;
      current = null;
      editorTitle.textContent = t('flowNew');
      editorHint.textContent = t('flowNewHint');
      source.value = starterFlow(name);
      deleteButton.hidden = true;
      showErrors([]);
      note.clear();
      drawGutter();
      drawCaret();
      markCurrent();
    }

    async function open(name) {
      note.clear();
      showErrors([]);
      try {
        const flow = await ctx.api('GET', `/v1/console/flows/${encodeURIComponent(name)}`);
        openStored(flow.name, flow.source);
      } catch (err) {
        note.error(err.message);
      }
    }

    function markCurrent() {
      for (const row of list.querySelectorAll('[data-flow]')) {
        if (row.dataset.flow === current) row.setAttribute('aria-current', 'true');
        else row.removeAttribute('aria-current');
      }
    }

    const newButton = h('button', { type: 'button', class: 'primary', id: 'flow-new', onclick: () => { openNew(); source.focus(); } }, t('flowNew'));
    const editor = h('section', { class: 'ocard', id: 'flow-editor' },
      h('div', { class: 'ocard-head' }, editorTitle, editorHint),
      h('div', { class: 'flow-edit' }, gutter, source),
      h('div', { class: 'flow-bar' }, caret),
      errors,
      note,
      h('div', { class: 'form-actions' }, deleteButton, checkButton, saveButton));
    root.replaceChildren(
      pageHead(t('flowsTitle'), t('flowsHint'), newButton),
      h('div', { class: 'flows-grid' }, card('flows', t('flowsList'), null, list, listStatus), editor));
    openNew();

    async function load() {
      let data;
      try {
        data = await ctx.api('GET', '/v1/console/flows');
      } catch (err) {
        list.replaceChildren(missing(err) ? unavailable('flows-unavailable') : h('p', { class: 'ostatus error' }, err.message));
        return;
      }
      const flows = data.flows || [];
      names = flows.map((f) => f.name);
      if (!flows.length) { list.replaceChildren(h('p', { class: 'empty-note' }, t('noFlows'))); return; }
      list.replaceChildren(h('ul', { class: 'flow-list', id: 'flow-list' }, flows.map((f) => {
        const keywords = (f.triggers && f.triggers.keywords) || [];
        return h('li', {},
          h('button', { type: 'button', class: 'flow-item', 'data-flow': f.name, onclick: () => open(f.name) },
            h('b', {}, f.name),
            f.description ? h('span', { class: 'flow-desc' }, f.description) : null,
            h('span', { class: 'muted' },
              keywords.slice(0, 3).map((k) => h('span', { class: 'tag' }, k)),
              keywords.length > 3 ? h('span', {}, `+${keywords.length - 3}`) : null,
              f.updated_at ? h('span', { class: 'flow-when' }, `${t('updated')} ${ago(f.updated_at)}`) : null)));
      })));
      markCurrent();
    }
    load();
  }

  const PAGES = { bot: botPage, knowledge: knowledgePage, unanswered: unansweredPage, flows: flowsPage, usage: usagePage, keys: keysPage };

  window.SapaOwner = {
    /** Draws owner page `page` into `root`; `context` carries the console's helpers. */
    render(page, root, context) {
      ctx = context;
      h = context.h;
      const draw = PAGES[page];
      if (draw) draw(root);
    },
  };
})();
