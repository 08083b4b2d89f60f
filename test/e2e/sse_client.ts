// Reads a Server-Sent Events response the way a streaming client does: one parsed event at a time.

/** Yields each `data:` payload of the stream ("[DONE]" included, as a string). */
export async function* sseEvents(res: Response): AsyncGenerator<unknown> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let at;
      while ((at = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        yield event === "data: [DONE]" ? "[DONE]" : JSON.parse(event.slice(6));
      }
    }
  } finally {
    reader.releaseLock();
  }
}
