// One EventSource per page for every channel the page shows: one connection, not one
// per channel. Over HTTP/1.1 a browser keeps at most six connections per origin, for
// all its tabs.

// --8<-- [start:open]
// handlers: {eventType: (data) => ...}; the API publishes each kind of event under its
// own type, e.g. bus.publish("orders", data, event="order").
function openOneStream(channels, handlers) {
  const query = channels.map((name) => `channel=${encodeURIComponent(name)}`).join("&");
  const source = new EventSource(`/events?${query}`);
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (event) => handle(JSON.parse(event.data)));
  }
  // Each id is a position in every channel ("orders=...,news=..."): when the connection
  // drops, EventSource sends the last one back and the service resumes all the
  // channels.
  return source;
}
// --8<-- [end:open]
