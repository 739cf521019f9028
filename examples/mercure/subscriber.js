// Discover the hub from the resource's Link headers, then subscribe with EventSource.
// The HttpOnly __Secure-mercure_access_token cookie (set by the same response)
// authorizes private updates. Mercure 1.0 (draft-08); hubs 0.x take topic= and
// lastEventID= instead of match= and last_event_id=.

// --8<-- [start:discover]
async function discover(resourceUrl) {
  const response = await fetch(resourceUrl);
  const found = {};
  // Several Link headers arrive joined by ", ": <url>; rel="…"; last-event-id="…"
  for (const link of (response.headers.get("Link") || "").split(/,\s*(?=<)/)) {
    const target = link.match(/^<([^>]*)>/)?.[1];
    const rel = link.match(/;\s*rel="([^"]*)"/)?.[1];
    if (rel === "mercure") {
      found.hub = target;
      found.lastEventId = link.match(/;\s*last-event-id="((?:[^"\\]|\\.)*)"/)?.[1];
    }
    if (rel === "self") found.topic = target;
  }
  return { ...found, resource: await response.json() };
}
// --8<-- [end:discover]

// --8<-- [start:subscribe]
function subscribe({ hub, topic, lastEventId }, onUpdate) {
  const url = new URL(hub);
  url.searchParams.append("match", topic); // match_urlpattern for a URL pattern
  // Updates published between rendering the resource and subscribing are not lost:
  if (lastEventId) url.searchParams.append("last_event_id", lastEventId);
  // withCredentials: send the cookie to the hub's origin
  const source = new EventSource(url, { withCredentials: true });
  source.onmessage = (event) => onUpdate(JSON.parse(event.data), event.lastEventId);
  return source;
}
// --8<-- [end:subscribe]

discover("/books/1").then((found) => {
  window.subscription = subscribe(found, (book, id) => {
    const item = document.createElement("li");
    item.textContent = `${book.title} (${id})`;
    document.getElementById("updates").append(item);
  });
});
