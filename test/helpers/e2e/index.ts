/**
 * End-to-end harness: real clients (dockerd, skopeo, ctr) and a real upstream registry (CNCF
 * distribution) around the built crossdock, all on loopback inside the private netns `npm test`
 * creates. Start every test file with `requirePrivateNetns(t)` and `createScope(t, name)`; every
 * helper registers its own cleanup on the scope.
 */
export { requirePrivateNetns, createScope, mountsUnder, NETNS_SKIP_REASON, type Scope } from './scope.js'
export { startDaemon, run, runOk, waitFor, freePort, pidGone, type Daemon, type RunResult } from './daemon.js'
export { FIXTURE, SYSTEM_BUNDLE, REPO_ROOT, writeClientBundle, writeCertDir, certDirFor } from './pki.js'
export { startDistribution, parseAccessLine, type Distribution, type DistributionOptions, type AccessLogEntry } from './distribution.js'
export { buildImage, pushImage, seedImage, MEDIA, type BuiltImage, type ImageSpec, type Descriptor } from './images.js'
export { startDockerd, type Dockerd, type DockerdOptions } from './dockerd.js'
export { startCrossdock, connectToValue, CROSSDOCK_CLI, type Crossdock, type CrossdockOptions, type LogLine } from './crossdock.js'
export { skopeo, startContainerd, type Containerd, type ClientNetOptions } from './clients.js'
