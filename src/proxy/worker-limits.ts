/**
 * V8 heap limits for data-plane workers.
 *
 * V8 lets a worker's young generation grow to 192 MiB (two 64 MiB semi-spaces plus large
 * objects) under load. A proxy allocates short-lived objects per request, so under sustained
 * traffic every worker grew to that size: a --concurrency 1 proxy sat at ~270 MiB RSS after a
 * load run instead of ~140 MiB idle, and a scavenge of a 64 MiB semi-space that happened to find
 * many survivors (while an old-space marking was in progress) paused the worker for 20-38 ms,
 * which is what the latency runs' p99 showed. With 16 MiB semi-spaces the same runs measured
 * ~200 MiB RSS and pauses under ~13 ms, for about 0.3 µs more GC time per request (more, smaller
 * scavenges). Old generation and stack keep V8's defaults.
 */
export const WORKER_YOUNG_GENERATION_MB = 48;

export function workerResourceLimits(): { maxYoungGenerationSizeMb: number } {
  return { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB };
}
