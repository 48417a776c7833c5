/**
 * Test helpers other packages' tests use, as `@corral/server/testing`. The export exists only under
 * the `development` condition (tests run with `--conditions=development`): nothing built into
 * `dist` may import it.
 */
export { GatedRuntime } from './gated-runtime.js';
export { PausableRuntime } from './pausable-runtime.js';
export { type CheckpointCall, CheckpointingRuntime } from './checkpointing-runtime.js';
export { TEST_IMAGE, dockerMissing, driverMissing, eventually, needNothingMissing, ociMissing, unavailableSuite } from './runtime-available.js';
export { sandboxFixture, specFixture } from './sandbox-fixture.js';
export { type ListeningTestServer, type TestServer, startListeningServer, startTestServer } from './test-server.js';
export { createScratchDatabase, deleteKubernetesNamespace, dropScratchDatabase } from './scratch-infrastructure.js';
export { K8S_TEST_BIN_DIR, K8S_TEST_IMAGE, TEST_KUBECONFIG, kubernetesMissing, kubernetesUnavailable } from './kubernetes-available.js';
export { imageBuildMissing, startImageBuildServer } from './image-build-server.js';
export { ImageBuildError, type ImageBuilder, type ImageBuildRequest, type ImageBuildResult, type ImageTransferRequest } from '../runtime/image-builder.js';
