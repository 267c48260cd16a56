/**
 * The WASI subset a Proxy-Wasm host provides (spec §1.5, cpp-host behaviour), registered under both
 * `wasi_snapshot_preview1` and `wasi_unstable`: fd_write to the log, clocks, random, environ from
 * the VM config, empty args, proc_exit as an exception, and errno stubs for the rest. No real
 * files or sockets are ever exposed.
 */
import { randomFillSync } from 'node:crypto';
import { Errno, Limits } from './abi.ts';
import { encodeString } from './pairs.ts';
import { ProcExit, type WasmVm } from './vm.ts';

type HostFn = (...args: any[]) => number | void;
type HostFactory = (vm: WasmVm) => HostFn;

const isStdio = (fd: number) => fd === 1 || fd === 2;

function fdWrite(vm: WasmVm, fd: number, iovs: number, n: number, nwrittenPtr: number): number {
  fd >>>= 0;
  if (!isStdio(fd)) return Errno.Badf;
  iovs >>>= 0;
  n >>>= 0;
  if (!vm.inBounds(iovs, n * 8)) return Errno.Fault;
  const dv = vm.dv();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const p = dv.getUint32(iovs + i * 8, true);
    const l = dv.getUint32(iovs + i * 8 + 4, true);
    const b = vm.readBytes(p, l);
    if (b === null) return Errno.Fault;
    chunks.push(b);
    total += l;
  }
  if (!vm.writeU32(nwrittenPtr, total)) return Errno.Fault;
  let text = Buffer.concat(chunks).toString('utf8');
  if (text.endsWith('\n')) text = text.slice(0, -1);
  if (text.length > 0) vm.pluginLog(fd === 1 ? 2 : 4, text);
  return Errno.Success;
}

function envEntries(vm: WasmVm): Uint8Array[] {
  return vm.env.map(([k, v]) => encodeString(`${k}=${v}\u0000`));
}

const nosys: HostFactory = () => () => Errno.Nosys;
const notsup: HostFactory = () => () => Errno.Notsup;
const badf: HostFactory = () => () => Errno.Badf;
const stdioOk: HostFactory = () => (fd: number) => (isStdio(fd >>> 0) ? Errno.Success : Errno.Badf);

export const wasiFunctions: Record<string, HostFactory> = {
  fd_write: (vm) => (fd: number, iovs: number, n: number, nw: number) => fdWrite(vm, fd, iovs, n, nw),
  fd_pwrite: (vm) => (fd: number, iovs: number, n: number, _off: bigint, nw: number) => fdWrite(vm, fd, iovs, n, nw),
  fd_read: nosys,
  fd_pread: nosys,
  fd_seek: () => () => Errno.Success,
  fd_close: () => () => Errno.Success,
  fd_fdstat_get: (vm) => (fd: number, statPtr: number) => {
    fd >>>= 0;
    if (!isStdio(fd)) return Errno.Badf;
    statPtr >>>= 0;
    if (!vm.inBounds(statPtr, 24)) return Errno.Fault;
    const dv = vm.dv();
    for (let i = 0; i < 24; i++) dv.setUint8(statPtr + i, 0);
    dv.setBigUint64(statPtr + 8, 64n, true); // rights_base = FD_WRITE
    return Errno.Success;
  },
  fd_fdstat_set_flags: nosys,
  fd_fdstat_set_rights: stdioOk,
  fd_prestat_get: badf,
  fd_prestat_dir_name: nosys,
  fd_filestat_get: badf,
  fd_advise: () => () => Errno.Success,
  fd_allocate: stdioOk,
  fd_datasync: stdioOk,
  fd_sync: stdioOk,
  fd_filestat_set_size: stdioOk,
  fd_filestat_set_times: stdioOk,
  fd_readdir: (vm) => (_fd: number, _buf: number, _len: number, _cookie: bigint, usedPtr: number) => {
    vm.writeU32(usedPtr, 0);
    return 20;
  },
  fd_renumber: () => (a: number, b: number) => (isStdio(a >>> 0) && isStdio(b >>> 0) ? Errno.Notsup : Errno.Badf),
  fd_tell: (vm) => (fd: number, ptr: number) => {
    if (!isStdio(fd >>> 0)) return Errno.Badf;
    return vm.writeU64(ptr, 0n) ? Errno.Success : Errno.Fault;
  },
  path_open: () => () => Errno.Noent,
  path_filestat_get: notsup,
  path_create_directory: notsup,
  path_remove_directory: notsup,
  path_unlink_file: notsup,
  path_rename: notsup,
  path_filestat_set_times: notsup,
  path_readlink: (vm) => (...a: number[]) => {
    vm.writeU32(a[a.length - 1]!, 0);
    return Errno.Notsup;
  },
  path_link: notsup,
  path_symlink: notsup,
  sock_accept: notsup,
  sock_recv: notsup,
  sock_send: notsup,
  sock_shutdown: notsup,
  environ_sizes_get: (vm) => (countPtr: number, sizePtr: number) => {
    const e = envEntries(vm);
    const size = e.reduce((s, b) => s + b.length, 0);
    return vm.writeU32(countPtr, e.length) && vm.writeU32(sizePtr, size) ? Errno.Success : Errno.Fault;
  },
  environ_get: (vm) => (arrPtr: number, bufPtr: number) => {
    arrPtr >>>= 0;
    bufPtr >>>= 0;
    const e = envEntries(vm);
    const size = e.reduce((s, b) => s + b.length, 0);
    if (!vm.inBounds(arrPtr, e.length * 4) || !vm.inBounds(bufPtr, size)) return Errno.Fault;
    let at = bufPtr;
    for (let i = 0; i < e.length; i++) {
      vm.writeU32(arrPtr + i * 4, at);
      vm.u8().set(e[i]!, at);
      at += e[i]!.length;
    }
    return Errno.Success;
  },
  args_sizes_get: (vm) => (argcPtr: number, sizePtr: number) => (vm.writeU32(argcPtr, 0) && vm.writeU32(sizePtr, 0) ? Errno.Success : Errno.Fault),
  args_get: () => () => Errno.Success,
  clock_time_get: (vm) => (id: number, _precision: bigint, outPtr: number) => {
    id >>>= 0;
    let ns: bigint;
    if (id === 0) ns = BigInt(Date.now()) * 1_000_000n;
    else if (id === 1) ns = process.hrtime.bigint();
    else return Errno.Notsup;
    return vm.writeU64(outPtr, ns) ? Errno.Success : Errno.Fault;
  },
  clock_res_get: (vm) => (id: number, outPtr: number) => {
    id >>>= 0;
    if (id > 1) return Errno.Notsup;
    return vm.writeU64(outPtr, 1n) ? Errno.Success : Errno.Fault;
  },
  random_get: (vm) => (ptr: number, len: number) => {
    ptr >>>= 0;
    len >>>= 0;
    if (len > Limits.randomGetMaxBytes) return Errno.Inval;
    if (len === 0) return Errno.Success;
    if (!vm.inBounds(ptr, len)) return Errno.Fault;
    randomFillSync(vm.u8(), ptr, len);
    return Errno.Success;
  },
  sched_yield: () => () => Errno.Success,
  poll_oneoff: (vm) => (_in: number, _out: number, _n: number, neventsPtr: number) => {
    vm.writeU32(neventsPtr, 0);
    return Errno.Success;
  },
  proc_exit: () => (code: number) => {
    throw new ProcExit(code >>> 0);
  },
  proc_raise: notsup,
};
