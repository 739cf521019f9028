// One EventSource client for the stream service, to copy beside your page's script.
// It resumes each channel where it stopped, gets a fresh token from your API for each
// stream it opens, backs off with full jitter, and stops with an error when refused.

// --8<-- [start:refused]
// A refusal that retrying cannot fix: the page shows it, the client stops.
export class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Asks your API (same origin, session cookie) for {"url": ...} with a fresh token.
export function fromApi(endpoint) {
  return async (signal) => {
    const response = await fetch(endpoint, { cache: "no-store", signal });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      throw new Refused(response.status, body.error ?? body.description ?? endpoint);
    }
    if (!response.ok || !body.url) throw new Error(`${endpoint}: ${response.status}`);
    return body.url;
  };
}
// --8<-- [end:refused]

// --8<-- [start:open]
export function openStream({
  getUrl, // async (signal) => a stream URL with a fresh token, e.g. fromApi(...)
  onEvent, // each event of `types`: a MessageEvent
  onReset = () => {}, // {channel, latest_id}: events were lost, refetch your state
  onError = console.error, // a Refused: the stream has stopped for good
  types = ["message"],
  remember = "", // a sessionStorage key: resume after a page reload too
  base = 1000, // ms: backoff doubles from here...
  cap = 30000, // ...up to here; the wait is a random time below it (full jitter)
}) {
  const saved = remember && sessionStorage.getItem(remember);
  const positions = saved ? JSON.parse(saved) : {}; // channel -> last event id
  const abort = new AbortController(); // cancels any fetch on close()
  let source = null;
  let timer = 0;
  let failures = 0; // reconnections in a row that did not open a stream
  let cutoffs = 0; // times this client was too slow: each one waits longer
  let unauthorized = 0; // 401s in a row: the second one, on a fresh token, stops
  let stopped = false;

  const stop = (error) => {
    stopped = true;
    source?.close();
    clearTimeout(timer);
    abort.abort();
    if (error) onError(error);
  };
  const backoff = (least = 0) => {
    source?.close();
    clearTimeout(timer);
    const ceiling = Math.min(cap, base * 2 ** (failures++ + cutoffs));
    if (!stopped) timer = setTimeout(connect, least + Math.random() * ceiling);
  };
  // --8<-- [end:open]

  // --8<-- [start:resume]
  // A stream's id is its cursor: the plain id for one channel, else "a=id,b=id".
  const track = (event, channels) => {
    const id = event.lastEventId;
    if (!id) return;
    for (const pair of id.includes("=") ? id.split(",") : [`${channels[0]}=${id}`]) {
      const [channel, position] = pair.split("=");
      positions[channel] = position;
    }
    if (remember) sessionStorage.setItem(remember, JSON.stringify(positions));
  };

  async function connect() {
    let url;
    try {
      url = new URL(await getUrl(abort.signal), location.href);
    } catch (error) {
      return error instanceof Refused ? stop(error) : backoff();
    }
    if (stopped) return;
    const channels = url.searchParams.getAll("channel");
    const known = channels.filter((channel) => positions[channel]);
    const cursor = known.map((channel) => `${channel}=${positions[channel]}`);
    if (cursor.length) url.searchParams.set("last_event_id", cursor.join(","));
    const es = (source = new EventSource(url));
    // --8<-- [end:resume]

    // --8<-- [start:events]
    let opened = false; // this EventSource has had a stream open
    let retrying = false; // the browser is retrying it by itself
    es.onopen = () => {
      opened = true;
      retrying = false;
      failures = unauthorized = 0;
    };
    for (const type of types) {
      es.addEventListener(type, (event) => (track(event, channels), onEvent(event)));
    }
    es.addEventListener("reset", (event) => {
      track(event, channels);
      onReset(JSON.parse(event.data));
    });
    es.addEventListener("close", (event) => {
      track(event, channels); // its id is the stream's cursor, even with no event yet
      const { reason } = JSON.parse(event.data);
      if (reason === "expired") {
        es.close();
        connect(); // with a fresh token, right away
      } else if (reason === "slow-consumer") {
        cutoffs++;
        backoff();
      }
      // "shutdown": the browser comes back by itself after the server's `retry:`.
    });
    es.onerror = () => {
      if (stopped) return;
      if (es.readyState === EventSource.CONNECTING && opened && !retrying) {
        retrying = true; // the stream ended: a first retry after the server's `retry:`
        return;
      }
      es.close(); // we reconnect ourselves, with backoff and a fresh token
      probe(url);
    };
  }
  // --8<-- [end:events]

  // --8<-- [start:probe]
  // EventSource does not say why it failed: one fetch of the same URL does.
  async function probe(url) {
    let response;
    try {
      response = await fetch(url, { cache: "no-store", signal: abort.signal });
    } catch {
      return backoff(); // the network, or close()
    }
    const { status } = response;
    if (status === 200) {
      response.body?.cancel(); // it opened this time: try again
      return backoff();
    }
    const body = await response.json().catch(() => ({}));
    if (stopped) return;
    const refused = new Refused(status, body.description ?? `stream: ${status}`);
    if (status === 401 && unauthorized++ === 0) return backoff(); // a new token
    if (status >= 400 && status < 500 && status !== 429) return stop(refused);
    backoff(1000 * Number(response.headers.get("Retry-After")) || 0); // 503: busy
  }
  // --8<-- [end:probe]

  connect();
  return { close: () => stop(), positions };
}
