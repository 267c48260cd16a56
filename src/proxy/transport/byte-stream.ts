/**
 * The socket members the HTTP/1.1 codec uses: node:net's Socket has them all, and so does the
 * native transport's NativeSocket. Keeping the codec to this list is what lets a connection run on
 * either (docs/adr-native-transport.md).
 */
export interface ByteStream {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableNeedDrain: boolean;
  write(data: string | Uint8Array, encoding?: BufferEncoding): boolean;
  /** Optional: a whole framed message (head, body chunks, tail) in one write without a Buffer of its own. */
  writeParts?(prefix: string, chunks: readonly Uint8Array[], suffix: string): boolean;
  end(): unknown;
  end(data: string, encoding: BufferEncoding): unknown;
  destroy(err?: Error): unknown;
  cork(): void;
  uncork(): void;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  ref(): unknown;
  unref(): unknown;
  setNoDelay(noDelay?: boolean): unknown;
  setTimeout(ms: number, callback?: () => void): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'end' | 'close' | 'drain' | 'connect', listener: () => void): unknown;
  once(event: string, listener: () => void): unknown;
}
