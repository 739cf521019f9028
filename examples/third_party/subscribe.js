// The browser side is the same whichever hub holds the stream (Pushpin, Nchan, Mercure
// or the sidestream service): an EventSource on a URL. The browser reconnects by itself
// and sends the last id it saw as Last-Event-ID; whether anything is replayed depends
// on the hub.
function subscribe(url, onMessage) {
  const source = new EventSource(url);
  source.addEventListener("message", (event) => {
    onMessage(JSON.parse(event.data), event.lastEventId);
  });
  return source;
}
