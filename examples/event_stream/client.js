// Listening in the browser: EventSource parses the stream, reconnects, and sends
// Last-Event-ID.

// --8<-- [start:listen]
export function listen(url, types, onEvent) {
  const source = new EventSource(url);
  // Events sent without an `event:` line have the type "message".
  for (const type of types) {
    source.addEventListener(type, (event) => {
      const { data, lastEventId } = event;
      onEvent({ type: event.type, data, lastEventId });
    });
  }
  source.addEventListener("error", () => {
    // CONNECTING: the stream ended or broke. The browser retries after
    // `retry` ms, sending the last id it saw as Last-Event-ID.
    // CLOSED: it gave up (a 204, an error status, a wrong Content-Type).
    if (source.readyState === EventSource.CLOSED) {
      onEvent({ type: "closed" });
    }
  });
  return source;
}
// --8<-- [end:listen]
