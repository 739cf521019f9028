// Long polling from the browser: one request at a time, each waiting up to 25 s for
// news.
// --8<-- [start:loop]
async function pollNotifications(url, onEvent, { onReset = () => {}, signal } = {}) {
  let lastId = ""; // no cursor yet: the first answer comes at once and carries one
  while (!signal?.aborted) {
    try {
      const query = new URLSearchParams({ last_id: lastId, timeout: "25" });
      const response = await fetch(`${url}?${query}`, { signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      if (body.reset) onReset(); // events were missed: reload the state, then carry on
      body.events.forEach(onEvent);
      lastId = body.last_id;
    } catch (error) {
      if (signal?.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 2000)); // back off, then retry
    }
  }
}
// --8<-- [end:loop]
