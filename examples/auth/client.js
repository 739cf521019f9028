// The browser's half: ask the API (same origin, session cookie) for a stream URL carrying a
// short-lived token, open it, and when the token expires get a new one and resume by id.

// --8<-- [start:connect]
async function openStream(onEvent, lastEventId = "") {
  const response = await fetch("/stream-token", { cache: "no-store" });
  if (!response.ok) throw new Error(`no stream token: ${response.status}`);
  const { url } = await response.json();
  const resume = lastEventId ? `&last_event_id=${encodeURIComponent(lastEventId)}` : "";
  const source = new EventSource(url + resume);
  let last = lastEventId;
  const reopen = () => {
    source.close();
    setTimeout(() => openStream(onEvent, last), 250);
  };
  source.onmessage = (event) => {
    last = event.lastEventId;
    onEvent(JSON.parse(event.data));
  };
  // The service ends a stream with `event: close` (its id stays the last one received).
  source.addEventListener("close", (event) => {
    last = event.lastEventId;
    if (JSON.parse(event.data).reason === "expired") reopen(); // else EventSource reconnects
  });
  // A refused reconnection (401: the token expired meanwhile) closes the EventSource for good.
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) reopen();
  };
  return source;
}
// --8<-- [end:connect]

openStream((message) => {
  const item = document.createElement("li");
  item.textContent = message.text;
  document.getElementById("events").append(item);
});
