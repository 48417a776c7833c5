/** Prime's build and artifact statuses (`ImageBuildStatusEnum`). */
export type ImageBuildStatus = 'PENDING' | 'UPLOADING' | 'BUILDING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

/** Statuses a build does not leave. */
export const FINAL_BUILD_STATUSES: readonly ImageBuildStatus[] = ['COMPLETED', 'FAILED', 'CANCELLED'];

/** Prime's image visibility. */
export type ImageVisibility = 'PRIVATE' | 'PUBLIC';

/** One Dockerfile build: its owner, what it builds, and how it went. */
export interface ImageBuildRecord {
  id: string;
  userId: string;
  teamId: string | null;
  imageName: string;
  imageTag: string;
  dockerfilePath: string;
  /** The reference the result gets (`corral.local/<owner>/<name>:<tag>`). */
  fullImagePath: string;
  status: ImageBuildStatus;
  /** Bytes of the uploaded context tarball; null until uploaded. */
  contextBytes: number | null;
  /** The step that failed (`[1/2] STEP 3/5: RUN …`), when one did. */
  failedStep: string | null;
  errorMessage: string | null;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  /** The replica that holds the uploaded context and runs the build; null until the upload. */
  replicaId: string | null;
  /** The visibility the image gets when the build completes (the request's, or the tag's current one, else PRIVATE). */
  visibility: ImageVisibility;
}

/** Fields of a build that change after it is created. */
export type ImageBuildPatch = Partial<Pick<ImageBuildRecord, 'status' | 'contextBytes' | 'failedStep' | 'errorMessage' | 'startedAt' | 'completedAt' | 'replicaId'>>;

/** A built image a sandbox can be created from, one per owner, name and tag. */
export interface ImageArtifactRecord {
  id: string;
  userId: string;
  teamId: string | null;
  imageName: string;
  imageTag: string;
  /** The reference `docker_image` names it by. */
  fullImagePath: string;
  /** The driver's id for it (the oci store's manifest digest). */
  runtimeRef: string;
  visibility: ImageVisibility;
  sizeBytes: number;
  buildId: string;
  createdAt: string;
  pushedAt: string;
}
