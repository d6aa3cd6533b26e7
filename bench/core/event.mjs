// The SSE event both ends of the benchmark agree on, and its size on the wire.
export const EVENT = 'data: {"t":"tok","v":1234567890}\n\n';
export const EVENT_BYTES = Buffer.byteLength(EVENT);
/** With chunked transfer encoding every write is one chunk: `<hex len>\r\n<data>\r\n`. */
export const EVENT_WIRE_BYTES = EVENT_BYTES.toString(16).length + 2 + EVENT_BYTES + 2;
