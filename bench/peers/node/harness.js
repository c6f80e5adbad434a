// bench/peers/node/harness.js: the Node.js peers of bench/peers.lua, dockerode
// and docker-exec, each doing what its README shows. Run by bench/peers.lua
// (one suite per process); prints one JSON object per line on stdout (the
// samples, in seconds) and progress on stderr.
//
//   node harness.js step       IMAGE N_EXEC N_RUN   # one command in a running container
//   node harness.js cold       IMAGE N              # a fresh container, start..gone
//   node harness.js throughput IMAGE BYTES REPS     # BYTES of zeros on stdout
//   node harness.js scale      IMAGE N              # N containers at once: start, `true`, gone
//
// Containers get NetworkMode none (as every box in this bench) and nothing else
// beyond each library's defaults.
'use strict';

const { Writable } = require('stream');
const Docker = require('dockerode');
const DockerExec = require('docker-exec');

const SOCKET = '/var/run/docker.sock';
const [suite, image, a1, a2] = process.argv.slice(2);
const docker = new Docker({ socketPath: SOCKET });

const now = () => Number(process.hrtime.bigint()) / 1e9;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const note = (msg) => process.stderr.write(`  node: ${msg}\n`);

// A Writable that counts (and drops) what it is given.
function counter() {
  const w = new Writable({ write(chunk, _enc, cb) { w.bytes += chunk.length; cb(); } });
  w.bytes = 0;
  return w;
}

// --- dockerode ---------------------------------------------------------------

// A container that stays up until removed.
async function dockerodeUp() {
  const c = await docker.createContainer({
    Image: image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'none' },
  });
  await c.start();
  return c;
}

// One command through the exec API, dockerode's way: create the exec, start it
// hijacked, demultiplex its output into stdout/stderr, and when the stream
// ends inspect the exec for the exit code. Resolves to { code, out, err } (byte counts).
async function dockerodeExec(c, cmd) {
  const exec = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = counter();
  const err = counter();
  await new Promise((resolve, reject) => {
    docker.modem.demuxStream(stream, out, err);
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  const info = await exec.inspect();
  return { code: info.ExitCode, out: out.bytes, err: err.bytes };
}

async function mustExec(c, cmd) {
  const r = await dockerodeExec(c, cmd);
  if (r.code !== 0) throw new Error(`dockerode exec ${cmd.join(' ')}: exit code ${r.code}`);
  return r;
}

// --- docker-exec (0.3.0), patched at run time for a current Engine --------------
//
// Its start() (1) pulls the image first: there is no registry here, and the
// image is local; (2) sends VolumesFrom as '' unless given, which the Engine
// rejects (it wants a list): we pass []; (3) sends its whole create config as
// the body of POST /containers/{id}/start, which Engines refuse since API 1.24:
// we send {}. Beyond those, (4) its create has no HostConfig, so we add
// NetworkMode none, as for every container in this bench. Its own code is
// untouched: (1) and (3) replace two methods on the instance, (2) is an option,
// (4) wraps createContainer.
function dockerExecRunner() {
  const ds = new DockerExec({ socketPath: SOCKET });
  ds.pullContainer = () => Promise.resolve(); // (1)
  const start = DockerExec.prototype.startContainer;
  ds.startContainer = function (container) { return start.call(this, container, {}); }; // (3)
  const create = DockerExec.prototype.createContainer;
  ds.createContainer = function (opts) {
    return create.call(this, Object.assign({}, opts, { HostConfig: { NetworkMode: 'none' } })); // (4)
  };
  return ds;
}

// start() logs 'container ready' with console.log; keep stdout for our JSON.
console.log = (...args) => process.stderr.write(`  docker-exec: ${args.join(' ')}\n`);

async function dockerExecStart() {
  const ds = dockerExecRunner();
  await ds.start({ Image: image, VolumesFrom: [] }); // (2)
  return ds;
}

// docker-exec's run() resolves with the exit code once its marker line has
// come back on the attach stream (a TTY: stdout and stderr together).
async function dockerExecRun(ds, cmd) {
  const code = await ds.run(cmd).catch((c) => c);
  if (code !== 0) throw new Error(`docker-exec run ${cmd}: exit code ${code}`);
}

// --- suites ----------------------------------------------------------------------

async function step(nExec, nRun) {
  const c = await dockerodeUp();
  const ds = await dockerExecStart();
  try {
    for (let i = 0; i < 5; i++) { await mustExec(c, ['true']); await dockerExecRun(ds, 'true'); } // warm-up
    const ex = [];
    let c0 = cpu();
    for (let i = 0; i < nExec; i++) {
      const t0 = now();
      await mustExec(c, ['true']);
      ex.push(now() - t0);
    }
    emit({ kind: 'samples', row: 'step', method: 'dockerode exec', samples: ex, cpu_s: cpu() - c0 });
    const runs = [];
    c0 = cpu();
    for (let i = 0; i < nRun; i++) {
      const t0 = now();
      await dockerExecRun(ds, 'true');
      runs.push(now() - t0);
    }
    emit({ kind: 'samples', row: 'step', method: 'docker-exec run', samples: runs, cpu_s: cpu() - c0 });
  } finally {
    await c.remove({ force: true });
    await ds.stop();
  }
}

async function dockerodeCold() {
  const c = await dockerodeUp();
  await c.remove({ force: true });
}

async function dockerExecCold() {
  const ds = await dockerExecStart();
  await ds.stop(); // kill, then remove
}

async function cold(n) {
  await dockerodeCold(); // warm-up
  await dockerExecCold();
  const a = [];
  const b = [];
  let ca = 0;
  let cb = 0;
  for (let i = 0; i < n; i++) { // alternating
    let c0 = cpu();
    let t0 = now();
    await dockerodeCold();
    a.push(now() - t0);
    ca += cpu() - c0;
    c0 = cpu();
    t0 = now();
    await dockerExecCold();
    b.push(now() - t0);
    cb += cpu() - c0;
  }
  emit({ kind: 'samples', row: 'cold', method: 'dockerode create+start+remove', samples: a, cpu_s: ca });
  emit({ kind: 'samples', row: 'cold', method: 'docker-exec start+stop', samples: b, cpu_s: cb });
}

async function throughput(bytes, reps) {
  const cmd = `dd if=/dev/zero bs=1048576 count=${bytes / 1048576} 2>/dev/null`;
  const c = await dockerodeUp();
  const ds = await dockerExecStart();
  try {
    for (let i = 0; i < reps; i++) {
      let c0 = cpu();
      let t0 = now();
      const r = await mustExec(c, ['sh', '-c', cmd]);
      emit({ kind: 'throughput', method: 'dockerode exec', bytes: r.out, want: bytes, wall_s: now() - t0, cpu_s: cpu() - c0 });
      // docker-exec hands out its attach stream: count what comes on it until
      // the run resolves (a TTY, so this includes the echoed command line).
      let got = 0;
      const count = (d) => { got += d.length; };
      ds.stream.on('data', count);
      c0 = cpu();
      t0 = now();
      await dockerExecRun(ds, cmd);
      const wall = now() - t0;
      ds.stream.removeListener('data', count);
      emit({ kind: 'throughput', method: 'docker-exec run', bytes: got, want: bytes, wall_s: wall, cpu_s: cpu() - c0 });
    }
  } finally {
    await c.remove({ force: true });
    await ds.stop();
  }
}

// N at once (Promise.all), each: create+start, exec `true`, remove.
async function scale(n) {
  await (async () => { const c = await dockerodeUp(); await mustExec(c, ['true']); await c.remove({ force: true }); })();
  const c0 = cpu();
  const t0 = now();
  const results = await Promise.allSettled(Array.from({ length: n }, async () => {
    const c = await dockerodeUp();
    try { await mustExec(c, ['true']); } finally { await c.remove({ force: true }); }
  }));
  const wall = now() - t0;
  const errors = results.filter((r) => r.status === 'rejected');
  if (errors.length) note(`${errors.length} of ${n} failed: ${errors[0].reason}`);
  emit({ kind: 'scale', method: 'dockerode', n, wall_s: wall, cpu_s: cpu() - c0, errors: errors.length });
}

async function main() {
  if (suite === 'step') await step(Number(a1), Number(a2));
  else if (suite === 'cold') await cold(Number(a1));
  else if (suite === 'throughput') await throughput(Number(a1), Number(a2));
  else if (suite === 'scale') await scale(Number(a1));
  else throw new Error(`unknown suite ${suite}`);
}

main().catch((e) => {
  process.stderr.write(`node harness ${suite}: ${e && e.stack || e}\n`);
  process.exit(1);
});
