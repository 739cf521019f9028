// The browser side: open the service's stream with EventSource and keep it open.
// `getToken()` asks the API for a short-lived token; the service checks it before streaming.

// --8<-- [start:client]
async function openStream(serviceUrl, channels, getToken, onEvent, lastEventId = "") {
  const url = new URL("/events", serviceUrl);
  for (const channel of channels) url.searchParams.append("channel", channel);
  url.searchParams.set("token", await getToken());
  // A page reload resumes too: EventSource itself only sends Last-Event-ID when it reconnects.
  if (lastEventId) url.searchParams.set("last_event_id", lastEventId);
  const source = new EventSource(url);
  let last = lastEventId;
  const remember = (event) => {
    last = event.lastEventId || last;
    sessionStorage.setItem("sidestream:last-event-id", last);
  };
  source.onmessage = (event) => {
    remember(event);
    onEvent("message", event.data);
  };
  // The id is too old for the retained history: reload the state, then carry on from here.
  source.addEventListener("reset", (event) => {
    remember(event);
    onEvent("reset", event.data);
  });
  // The service ends a stream with `event: close` and a reason. On "shutdown" or
  // "slow-consumer" EventSource reconnects by itself with Last-Event-ID; an expired token
  // needs a new one, so open a new EventSource that resumes from the last id.
  source.addEventListener("close", (event) => {
    const { reason } = JSON.parse(event.data);
    onEvent("close", reason);
    if (reason === "expired") {
      source.close();
      openStream(serviceUrl, channels, getToken, onEvent, last);
    }
  });
  return source;
}
// --8<-- [end:client]
