// Short polling: ask every few seconds, remember the newest id seen.
// --8<-- [start:client]
function startShortPolling(url, onNotification, everyMs = 5000) {
  let afterId = 0;
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return; // a slow answer must not overlap the next tick
    busy = true;
    try {
      const response = await fetch(`${url}?after=${afterId}`);
      const { notifications } = await response.json();
      for (const notification of notifications) {
        onNotification(notification);
        afterId = notification.id;
      }
    } catch (error) {
      console.warn("poll failed; trying again on the next tick", error);
    } finally {
      busy = false;
    }
  }, everyMs);
  return () => clearInterval(timer); // call it to stop polling
}
// --8<-- [end:client]
