// The sign-in page's behaviour. The server renders the initial state into <body data-state>;
// this script talks to the page API (POST /login/start, POST /login/poll, GET /login/continue)
// and switches the state that login.css shows. Operators may replace this file (theme.dir).
'use strict';
(() => {
  const body = document.body;
  const loginId = body.dataset.login || '';
  const mode = body.dataset.mode || 'auto';
  const note = document.getElementById('note');
  // The service may live under a path prefix; this script is served from <base>/assets/.
  const base = document.currentScript ? new URL('..', document.currentScript.src) : new URL('/', location.href);
  const endpoint = (path) => new URL(path, base).href;
  const IN_PROGRESS = ['waiting', 'checking', 'redirecting'];
  const STATES = ['ready', 'denied', 'unavailable', 'expired', 'invalid', ...IN_PROGRESS];

  let start = null; // the last successful /login/start answer
  let starting = null; // promise of the /login/start in flight
  let pendingPopup = null; // popup opened on /login/popup-wait before the Plex URL was known
  let redirectPending = false;
  let generation = 0; // bumped by every (re)start so late answers of an older one are ignored
  let polling = false;
  let pollTimer = 0;
  let inFlight = false;
  let pollAgain = false;
  let failures = 0;
  let expiryTimer = 0;
  let noteKind = '';

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const backoff = (n) => Math.min(1000 * 2 ** Math.min(n, 4), 15000) * (0.75 + Math.random() / 2);
  const clampDelay = (ms, fallback) =>
    Number.isFinite(ms) ? Math.min(Math.max(ms, 250), 30000) : fallback;

  function show(state, focus = true) {
    if (body.dataset.state === state) return;
    body.dataset.state = state;
    delete body.dataset.late;
    // Moving focus to the new heading makes screen readers announce the change of state.
    const heading = focus && document.getElementById('h-' + state);
    if (heading) heading.focus();
  }

  function setNote(kind) {
    noteKind = kind;
    note.textContent = kind ? note.dataset[kind] || '' : '';
  }

  function clearNote(kind) {
    if (noteKind === kind) setNote('');
  }

  function sameOrigin(url) {
    try {
      return new URL(url, location.href).origin === location.origin;
    } catch {
      return false;
    }
  }

  function isWebUrl(url) {
    try {
      return /^https?:$/.test(new URL(url, location.href).protocol);
    } catch {
      return false;
    }
  }

  // Resolves to the JSON answer ({state, ...}); 429 answers carry `throttled`. Rejects on
  // network errors and on 5xx without a JSON body (a proxy's error page), which are retried.
  async function api(url, payload) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (res.status === 429) {
      return { throttled: true, retry_after_ms: data && data.retry_after_ms };
    }
    if (!data || typeof data.state !== 'string') {
      if (res.status >= 500) throw new Error('HTTP ' + res.status);
      return { state: 'invalid', message: 'HTTP ' + res.status };
    }
    return data;
  }

  function finish(data) {
    const state = STATES.includes(data.state) && !IN_PROGRESS.includes(data.state) ? data.state : 'unavailable';
    stopPolling();
    closePendingPopup();
    if (state === 'denied') document.getElementById('account').textContent = data.account || '';
    if (state === 'invalid') document.getElementById('detail').textContent = data.message || '';
    if (typeof data.request_id === 'string') {
      document.getElementById('request-id').textContent = data.request_id;
    }
    show(state);
  }

  function closePendingPopup() {
    if (pendingPopup) {
      try {
        pendingPopup.close();
      } catch {
        // Already gone; nothing to tidy up.
      }
      pendingPopup = null;
    }
  }

  function begin(restart) {
    const gen = ++generation;
    start = null;
    body.dataset.busy = '';
    const payload = restart ? { login: loginId, restart: true } : { login: loginId };
    starting = (async () => {
      for (let attempt = 0; ; attempt++) {
        let data;
        try {
          data = await api(endpoint('login/start'), payload);
        } catch {
          if (gen !== generation) return;
          setNote('reconnecting');
          await sleep(backoff(attempt));
          continue;
        }
        if (gen !== generation) return;
        clearNote('reconnecting');
        if (data.throttled) {
          await sleep(clampDelay(data.retry_after_ms, backoff(attempt)));
          continue;
        }
        delete body.dataset.busy;
        starting = null;
        if (data.state === 'ready' && isWebUrl(data.popup_url) && isWebUrl(data.redirect_url)) {
          ready(data);
        } else {
          finish(data);
        }
        return;
      }
    })();
  }

  function ready(data) {
    start = data;
    if (pendingPopup) {
      try {
        pendingPopup.location.href = data.popup_url;
      } catch {
        // The person closed the "Opening Plex…" window; "Open Plex again" is there for them.
      }
      pendingPopup = null;
    }
    if (redirectPending) {
      location.assign(data.redirect_url);
    }
    clearTimeout(expiryTimer);
    const seconds = Number(data.expires_in);
    if (seconds > 0) {
      expiryTimer = setTimeout(() => {
        if (body.dataset.state === 'ready' || body.dataset.state === 'waiting') finish({ state: 'expired' });
      }, Math.min(seconds * 1000, 2 ** 31 - 1));
    }
  }

  // Small touch screens get the full-page redirect: popups there are tabs that people lose.
  function useRedirect() {
    if (mode === 'redirect') return true;
    if (mode === 'popup') return false;
    return window.matchMedia('(pointer: coarse) and (max-width: 767.98px)').matches;
  }

  function popupFeatures() {
    const width = 520;
    const height = 720;
    const left = Math.max(0, Math.round(window.screenX + (window.outerWidth - width) / 2));
    const top = Math.max(0, Math.round(window.screenY + (window.outerHeight - height) / 3));
    return `popup=yes,width=${width},height=${height},left=${left},top=${top}`;
  }

  // Must run synchronously inside the click handler, never after an await: otherwise
  // browsers treat window.open as unsolicited and block it.
  function openPopup() {
    if (!start && !starting) begin(false);
    const url = start ? start.popup_url : endpoint('login/popup-wait');
    const popup = window.open(url, 'plex-oidc-login', popupFeatures());
    if (!popup) {
      setNote('blocked');
      toRedirect();
      return;
    }
    if (!start) pendingPopup = popup;
    body.dataset.via = 'popup';
    show('waiting');
    startPolling(0);
  }

  function toRedirect() {
    if (!start && !starting) begin(false);
    body.dataset.via = 'redirect';
    show('waiting');
    stopPolling();
    if (start) {
      location.assign(start.redirect_url);
    } else {
      redirectPending = true;
    }
  }

  function startPolling(delay) {
    if (polling) return;
    polling = true;
    schedule(delay);
  }

  function stopPolling() {
    polling = false;
    clearTimeout(pollTimer);
  }

  function schedule(ms) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(pollOnce, ms);
  }

  // Asks now instead of waiting out the interval or a backoff; never two polls at once.
  function pollSoon() {
    if (polling) schedule(0);
  }

  async function pollOnce() {
    if (!polling) return;
    if (inFlight) {
      pollAgain = true;
      return;
    }
    inFlight = true;
    pollAgain = false;
    try {
      await pollStep();
    } finally {
      inFlight = false;
    }
    if (pollAgain) pollSoon();
  }

  async function pollStep() {
    if (starting) {
      await starting;
      if (!start || !polling) return;
    }
    const gen = generation;
    const interval = clampDelay(start && start.poll_interval_ms, 1000);
    let data;
    try {
      data = await api(endpoint('login/poll'), { login: loginId });
    } catch {
      if (gen !== generation || !polling) return;
      failures++;
      setNote('reconnecting');
      schedule(backoff(failures));
      return;
    }
    if (gen !== generation || !polling) return;
    failures = 0;
    clearNote('reconnecting');
    if (data.throttled) {
      schedule(clampDelay(data.retry_after_ms, interval * 2));
      return;
    }
    const next = clampDelay(data.retry_after_ms, interval);
    switch (data.state) {
      case 'ready': // no Plex PIN yet on the server's side: nothing to do but wait
      case 'waiting':
        schedule(next);
        break;
      case 'checking':
        show('checking');
        schedule(next);
        break;
      case 'approved':
        stopPolling();
        if (sameOrigin(data.continue_url)) {
          leave(data.continue_url);
        } else {
          finish({ state: 'invalid', message: 'continue_url is not on this site' });
        }
        break;
      default:
        finish(data);
    }
  }

  function leave(url) {
    clearTimeout(expiryTimer);
    show('redirecting');
    document.getElementById('continue').href = url;
    // Should the navigation stall, a plain link appears after a while.
    setTimeout(() => {
      body.dataset.late = '';
    }, 8000);
    location.assign(url);
  }

  function restart() {
    stopPolling();
    closePendingPopup();
    redirectPending = false;
    setNote('');
    delete body.dataset.via;
    document.getElementById('account').textContent = '';
    show('ready');
    begin(true);
  }

  // Without a pending login (a preview page, an error page) there is nothing to start or
  // restart here; reloading asks the server again, which is the honest answer.
  const withLogin = (fn) => () => (loginId ? fn() : location.reload());
  const actions = {
    signin: withLogin(() => (useRedirect() ? toRedirect() : openPopup())),
    reopen: withLogin(openPopup),
    'same-window': withLogin(toRedirect),
    restart: withLogin(restart),
    // An expired login cannot be restarted from here; the server may name where a new one begins
    // (after a full-page redirect this URL is /login/continue, which would only say "expired" again).
    reload() {
      const again = body.dataset.restart;
      if (again && sameOrigin(again)) location.assign(again);
      else location.reload();
    },
  };

  document.addEventListener('click', (event) => {
    const target = event.target instanceof Element && event.target.closest('[data-action]');
    const action = target && actions[target.dataset.action];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // Signs that the person is back from Plex: ask right away rather than at the next interval.
  // popup-done.html broadcasts on approval; focus returns when the popup closes.
  const pollNow = () => {
    if (document.visibilityState === 'visible') pollSoon();
  };
  window.addEventListener('focus', pollNow);
  document.addEventListener('visibilitychange', pollNow);
  if ('BroadcastChannel' in window) {
    new BroadcastChannel('plex-oidc-login').addEventListener('message', pollSoon);
  }

  // Back button from Plex after a full-page redirect restores this page from the bfcache.
  window.addEventListener('pageshow', (event) => {
    if (!event.persisted || !loginId) return;
    if (body.dataset.via === 'redirect' && body.dataset.state === 'waiting') {
      redirectPending = false;
      delete body.dataset.via;
      show('ready', false);
    } else if (IN_PROGRESS.includes(body.dataset.state)) {
      polling = false;
      startPolling(0);
    }
  });

  if (loginId) {
    const state = body.dataset.state;
    if (state === 'ready') begin(false);
    else if (state === 'waiting' || state === 'checking') startPolling(0);
  }
})();
