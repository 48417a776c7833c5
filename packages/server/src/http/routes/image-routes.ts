import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import type { ImageArtifactRecord, ImageBuildRecord } from '../../records/image-records.js';
import type { ImageListRow } from '../../services/image-service.js';
import { ApiError } from '../../errors/api-error.js';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, ErrorBody, Nullable, StringEnum, SuccessResponse } from '../schemas/common.js';

const tags = ['Images'];
const STATUSES = ['PENDING', 'UPLOADING', 'BUILDING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;

const BuildArtifact = Type.Object({
  id: Type.String(),
  artifactType: StringEnum(['CONTAINER_IMAGE', 'VM_SANDBOX']),
  status: StringEnum(STATUSES),
  fullImagePath: Nullable(Type.String()),
  errorMessage: Nullable(Type.String()),
  createdAt: Type.String(),
  startedAt: Nullable(Type.String()),
  completedAt: Nullable(Type.String()),
});

const BuildStatus = Type.Object({
  id: Type.String(),
  imageName: Type.String(),
  imageTag: Type.String(),
  status: StringEnum(STATUSES),
  createdAt: Type.String(),
  startedAt: Nullable(Type.String()),
  completedAt: Nullable(Type.String()),
  artifacts: Type.Array(BuildArtifact),
  fullImagePath: Type.String(),
  errorMessage: Nullable(Type.String()),
  /** Corral: the Dockerfile step that failed. */
  failedStep: Nullable(Type.String()),
  teamId: Nullable(Type.String()),
});

const ImageRow = Type.Object({
  id: Type.String(),
  artifactType: StringEnum(['CONTAINER_IMAGE', 'VM_SANDBOX']),
  imageName: Type.String(),
  imageTag: Type.String(),
  status: StringEnum(STATUSES),
  fullImagePath: Nullable(Type.String()),
  errorMessage: Nullable(Type.String()),
  sizeBytes: Nullable(Type.Integer()),
  visibility: StringEnum(['PRIVATE', 'PUBLIC']),
  createdAt: Type.String(),
  startedAt: Nullable(Type.String()),
  completedAt: Nullable(Type.String()),
  pushedAt: Nullable(Type.String()),
  teamId: Nullable(Type.String()),
  ownerType: StringEnum(['personal', 'team']),
  displayRef: Nullable(Type.String()),
});

const Page = Type.Object({
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 250, default: 100 })),
  teamId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
});

const ImagesQuery = Type.Object({
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 250, default: 100 })),
  teamId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  ownerScope: Type.Optional(Type.String({ maxLength: 32 })),
  search: Type.Optional(Type.String({ maxLength: 256 })),
});

const BuildBody = Type.Object({
  image_name: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
  image_tag: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
  dockerfile_path: Type.Optional(Type.String({ maxLength: 4096, default: 'Dockerfile' })),
  source_image: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
  sourceImage: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
  platform: Type.Optional(Type.String({ maxLength: 64, default: 'linux/amd64' })),
  team_id: Type.Optional(Nullable(Type.String({ maxLength: 128 }))),
  teamId: Type.Optional(Nullable(Type.String({ maxLength: 128 }))),
  visibility: Type.Optional(Nullable(StringEnum(['INHERIT', 'PRIVATE', 'PUBLIC']))),
  owner_scope: Type.Optional(Nullable(Type.String({ maxLength: 32 }))),
  ownerScope: Type.Optional(Nullable(Type.String({ maxLength: 32 }))),
  /** Corral: the registry credentials a transfer pulls with (default: the caller's for the source's registry). */
  registry_credentials_id: Type.Optional(Nullable(Type.String({ maxLength: 128 }))),
});

const BuildResponse = Type.Object({
  build_id: Type.String(),
  buildIds: Type.Array(Type.String()),
  /** Empty for a transfer (there is no context to upload): Prime's schema has a string here. */
  upload_url: Type.String(),
  /** 0 for a transfer. */
  expires_in: Type.Integer(),
  fullImagePath: Type.String(),
  visibility: StringEnum(['PRIVATE', 'PUBLIC']),
});

const TransferResult = Type.Object({
  sourceImage: Type.String(),
  success: Type.Boolean(),
  buildId: Nullable(Type.String()),
  fullImagePath: Nullable(Type.String()),
  visibility: Nullable(StringEnum(['PRIVATE', 'PUBLIC'])),
  error: Nullable(Type.String()),
  retryable: Type.Boolean(),
});

const BulkTransferResponse = Type.Object({ results: Type.Array(TransferResult), failed: Type.Array(TransferResult) });

const Owner = Type.Union([
  Type.Object({ type: Type.Literal('personal') }),
  Type.Object({ type: Type.Literal('team'), teamId: Type.String({ minLength: 1, maxLength: 128 }) }),
  Type.Object({ type: Type.Literal('platform') }),
]);

const UpdateSource = Type.Object({
  owner: Type.Optional(Owner),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  tag: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  reference: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
});

const UpdateImagesBody = Type.Object({
  mode: Type.Optional(Type.Literal('explicit')),
  dryRun: Type.Optional(Type.Boolean()),
  updates: Type.Array(
    Type.Object({
      source: UpdateSource,
      set: Type.Object({
        name: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
        tag: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
        owner: Type.Optional(Owner),
        visibility: Type.Optional(StringEnum(['PRIVATE', 'PUBLIC'])),
      }),
    }),
    { minItems: 1, maxItems: 100 },
  ),
});

const Coordinates = Type.Object({ owner: Owner, name: Type.String(), tag: Type.String(), visibility: StringEnum(['PRIVATE', 'PUBLIC']) });

const UpdateImagesResponse = Type.Object({
  success: Type.Boolean(),
  dryRun: Type.Boolean(),
  results: Type.Array(
    Type.Object({
      source: UpdateSource,
      success: Type.Boolean(),
      before: Nullable(Coordinates),
      after: Nullable(Coordinates),
      error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
    }),
  ),
});

const BuildIdParams = Type.Object({ build_id: Type.String({ minLength: 1, maxLength: 128 }) });
const ImageParams = Type.Object({ image_name: Type.String({ minLength: 1, maxLength: 256 }), image_tag: Type.String({ minLength: 1, maxLength: 256 }) });
const UploadQuery = Type.Object({ expires: Type.String({ maxLength: 32 }), signature: Type.String({ maxLength: 128 }) });
const CheckImageBody = Type.Object({
  image: Type.String({ minLength: 1, maxLength: 1024 }),
  registry_credentials_id: Type.Optional(Nullable(Type.String({ maxLength: 128 }))),
});

function buildView(b: ImageBuildRecord): Static<typeof BuildStatus> {
  return {
    id: b.id,
    imageName: b.imageName,
    imageTag: b.imageTag,
    status: b.status,
    createdAt: b.createdAt,
    startedAt: b.startedAt,
    completedAt: b.completedAt,
    artifacts: [
      {
        id: b.id,
        artifactType: 'CONTAINER_IMAGE',
        status: b.status,
        fullImagePath: b.fullImagePath,
        errorMessage: b.errorMessage,
        createdAt: b.createdAt,
        startedAt: b.startedAt,
        completedAt: b.completedAt,
      },
    ],
    fullImagePath: b.fullImagePath,
    errorMessage: b.errorMessage,
    failedStep: b.failedStep,
    teamId: b.teamId,
  };
}

function displayRef(owner: { userId: string; teamId: string | null }, name: string, tag: string): string {
  return owner.teamId === null ? `${owner.userId}/${name}:${tag}` : `team-${owner.teamId}/${name}:${tag}`;
}

function artifactView(a: ImageArtifactRecord): Static<typeof ImageRow> {
  return {
    id: a.id,
    artifactType: 'CONTAINER_IMAGE',
    imageName: a.imageName,
    imageTag: a.imageTag,
    status: 'COMPLETED',
    fullImagePath: a.fullImagePath,
    errorMessage: null,
    sizeBytes: a.sizeBytes,
    visibility: a.visibility,
    createdAt: a.createdAt,
    startedAt: null,
    completedAt: a.pushedAt,
    pushedAt: a.pushedAt,
    teamId: a.teamId,
    ownerType: a.teamId === null ? 'personal' : 'team',
    displayRef: displayRef(a, a.imageName, a.imageTag),
  };
}

function rowView(row: ImageListRow): Static<typeof ImageRow> {
  if (row.kind === 'artifact') return artifactView(row.artifact);
  const b = row.build;
  return {
    id: b.id,
    artifactType: 'CONTAINER_IMAGE',
    imageName: b.imageName,
    imageTag: b.imageTag,
    status: b.status,
    fullImagePath: b.fullImagePath,
    errorMessage: b.errorMessage,
    sizeBytes: null,
    visibility: b.visibility,
    createdAt: b.createdAt,
    startedAt: b.startedAt,
    completedAt: b.completedAt,
    pushedAt: null,
    teamId: b.teamId,
    ownerType: b.teamId === null ? 'personal' : 'team',
    displayRef: displayRef(b, b.imageName, b.imageTag),
  };
}

function baseUrl(services: AppServices, request: FastifyRequest): string {
  return (services.config.publicUrl ?? `http://${request.host}`).replace(/\/+$/, '');
}

/**
 * Prime's images API (`/images`, `/images/build…`), Corral's build log extension and the signed
 * context upload URL, and `POST /template/check-docker-image`.
 */
export async function registerImageRoutes(app: FastifyInstance, services: AppServices): Promise<void> {
  const { images } = services;

  app.post<{ Body: Static<typeof BuildBody> }>(
    '/images/build',
    {
      config: { rateLimit: 'images.build' },
      schema: {
        tags,
        summary: 'Initiate Image Build (a Dockerfile build, or a transfer of source_image: one image, or several comma-separated)',
        body: BuildBody,
        response: { 201: Type.Union([BuildResponse, BulkTransferResponse]), 403: ErrorBody, 501: ErrorBody, 503: ErrorBody, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const visibility = b.visibility ?? null;
      const source = b.source_image ?? b.sourceImage ?? null;
      if (source !== null) {
        const sources = source.split(',').map((s) => s.trim()).filter((s) => s !== '');
        const outcomes = await images.transfer(principalOf(request), {
          sources,
          imageName: b.image_name ?? null,
          imageTag: b.image_tag ?? null,
          platform: b.platform ?? 'linux/amd64',
          teamId: b.team_id ?? b.teamId ?? null,
          visibility,
          ownerScope: b.owner_scope ?? b.ownerScope ?? null,
          registryCredentialsId: b.registry_credentials_id ?? null,
        });
        const first = outcomes[0];
        if (sources.length === 1 && first?.success === true) {
          return reply.code(201).send({
            build_id: first.build.id,
            buildIds: [first.build.id],
            upload_url: '',
            expires_in: 0,
            fullImagePath: first.build.fullImagePath,
            visibility: first.build.visibility,
          });
        }
        const results = outcomes.map((o) =>
          o.success
            ? { sourceImage: o.sourceImage, success: true, buildId: o.build.id, fullImagePath: o.build.fullImagePath, visibility: o.build.visibility, error: null, retryable: false }
            : { sourceImage: o.sourceImage, success: false, buildId: null, fullImagePath: null, visibility: null, error: o.error, retryable: false },
        );
        return reply.code(201).send({ results, failed: results.filter((r) => !r.success) });
      }
      const started = await images.initiate(principalOf(request), {
        imageName: b.image_name ?? null,
        imageTag: b.image_tag ?? null,
        dockerfilePath: b.dockerfile_path ?? 'Dockerfile',
        sourceImage: b.source_image ?? b.sourceImage ?? null,
        platform: b.platform ?? 'linux/amd64',
        teamId: b.team_id ?? b.teamId ?? null,
        visibility,
        ownerScope: b.owner_scope ?? b.ownerScope ?? null,
      });
      return reply.code(201).send({
        build_id: started.build.id,
        buildIds: [started.build.id],
        upload_url: `${baseUrl(services, request)}${started.uploadPath}`,
        expires_in: started.expiresIn,
        fullImagePath: started.build.fullImagePath,
        visibility: started.build.visibility,
      });
    },
  );

  app.post<{ Params: Static<typeof BuildIdParams> }>(
    '/images/build/:build_id/start',
    {
      schema: {
        tags,
        summary: 'Start Image Build (after the context upload)',
        params: BuildIdParams,
        body: Type.Optional(Type.Object({ context_uploaded: Type.Optional(Type.Boolean()) })),
        response: { 200: BuildStatus, 409: ErrorBody, 501: ErrorBody, ...ERROR_RESPONSES },
      },
    },
    async (request) => buildView(await images.start(principalOf(request), request.params.build_id)),
  );

  app.get<{ Params: Static<typeof BuildIdParams> }>(
    '/images/build/:build_id',
    { schema: { tags, summary: 'Get Build Status', params: BuildIdParams, response: { 200: BuildStatus, ...ERROR_RESPONSES } } },
    async (request) => buildView(await images.get(principalOf(request), request.params.build_id)),
  );

  app.get<{ Params: Static<typeof BuildIdParams> }>(
    '/images/build/:build_id/logs',
    {
      schema: {
        tags,
        summary: "Build output so far (Corral): buildah's log, at most 4 MiB",
        params: BuildIdParams,
        response: { 200: Type.Object({ build_id: Type.String(), status: StringEnum(STATUSES), logs: Type.String() }), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const { build, logs } = await images.logs(principalOf(request), request.params.build_id);
      return { build_id: build.id, status: build.status, logs };
    },
  );

  app.get<{ Querystring: Static<typeof Page> }>(
    '/images/builds',
    {
      schema: {
        tags,
        summary: 'List Image Builds',
        querystring: Page,
        response: { 200: Type.Object({ data: Type.Array(BuildStatus), total_count: Type.Integer(), offset: Type.Integer(), limit: Type.Integer() }), 403: ErrorBody, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const offset = request.query.offset ?? 0;
      const limit = request.query.limit ?? 100;
      const page = await images.list(principalOf(request), request.query.teamId ?? null, offset, limit);
      return { data: page.rows.map(buildView), total_count: page.total, offset, limit };
    },
  );

  app.get<{ Querystring: Static<typeof ImagesQuery> }>(
    '/images',
    {
      config: { rateLimit: 'images.list' },
      schema: {
        tags,
        summary: 'List User Images',
        querystring: ImagesQuery,
        response: {
          200: Type.Object({ data: Type.Array(ImageRow), total_count: Type.Integer(), totalCount: Type.Integer(), offset: Type.Integer(), limit: Type.Integer() }),
          403: ErrorBody,
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const offset = request.query.offset ?? 0;
      const limit = request.query.limit ?? 100;
      // Platform images (ownerScope=platform): Corral has none (its offline images are not artifacts of the images API).
      if (request.query.ownerScope !== undefined) return { data: [], total_count: 0, totalCount: 0, offset, limit };
      const page = await images.listImages(principalOf(request), request.query.teamId ?? null, { offset, limit, search: request.query.search ?? null });
      return { data: page.rows.map(rowView), total_count: page.total, totalCount: page.total, offset, limit };
    },
  );

  app.delete<{ Params: Static<typeof ImageParams>; Querystring: { teamId?: string } }>(
    '/images/:image_name/:image_tag',
    {
      config: { rateLimit: 'images.delete' },
      schema: {
        tags,
        summary: 'Delete User Image',
        params: ImageParams,
        querystring: Type.Object({ teamId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })) }),
        response: { 200: SuccessResponse, 403: ErrorBody, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const { image_name: name, image_tag: tag } = request.params;
      await images.deleteImage(principalOf(request), name, tag, request.query.teamId ?? null);
      return { success: true, message: `Image ${name}:${tag} deleted` };
    },
  );

  app.patch<{ Params: Static<typeof ImageParams>; Body: { visibility: 'PRIVATE' | 'PUBLIC'; teamId?: string | null } }>(
    '/images/:image_name/:image_tag/visibility',
    {
      config: { rateLimit: 'images.visibility' },
      schema: {
        tags,
        summary: 'Update Image Visibility (PUBLIC: every user may run it and build FROM it by its full path; only its owners list, change or delete it)',
        params: ImageParams,
        body: Type.Object({ visibility: StringEnum(['PRIVATE', 'PUBLIC']), teamId: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))) }),
        response: {
          200: Type.Object({ success: Type.Boolean(), message: Type.String(), visibility: StringEnum(['PRIVATE', 'PUBLIC']), images: Type.Array(ImageRow) }),
          403: ErrorBody,
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const { image_name: name, image_tag: tag } = request.params;
      const artifact = await images.setVisibility(principalOf(request), name, tag, request.body.visibility, request.body.teamId ?? null);
      return { success: true, message: `Image ${name}:${tag} is ${artifact.visibility}`, visibility: artifact.visibility, images: [artifactView(artifact)] };
    },
  );

  app.patch<{ Body: Static<typeof UpdateImagesBody> }>(
    '/images',
    {
      config: { rateLimit: 'images.visibility' },
      schema: {
        tags,
        summary: 'Update Images: renames, moves between personal and team scope, visibility (PRIVATE); each item succeeds or fails alone',
        body: UpdateImagesBody,
        response: { 200: UpdateImagesResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const dryRun = request.body.dryRun ?? false;
      const outcomes = await images.update(principalOf(request), request.body.updates, dryRun);
      const results = outcomes.map((o, i) => ({ source: request.body.updates[i]?.source ?? {}, ...o }));
      return { success: results.every((r) => r.success), dryRun, results };
    },
  );

  app.post<{ Params: Static<typeof ImageParams>; Body: { teamId?: string | null; ownerScope?: string | null } | undefined }>(
    '/images/:image_name/:image_tag/vm-build',
    {
      config: { rateLimit: 'images.build' },
      schema: {
        tags,
        summary: "Build VM Image: Corral's sandboxes are containers, so the built image is what they run; nothing more is built (the image as it is, COMPLETED)",
        params: ImageParams,
        body: Type.Optional(Type.Object({ teamId: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))), ownerScope: Type.Optional(Nullable(Type.String({ maxLength: 32 }))) })),
        response: {
          200: Type.Object({ success: Type.Boolean(), message: Type.String(), status: StringEnum(STATUSES), fullImagePath: Type.String(), images: Type.Array(ImageRow) }),
          403: ErrorBody,
          501: ErrorBody,
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const { image_name: name, image_tag: tag } = request.params;
      if ((request.body?.ownerScope ?? null) !== null) throw new ApiError('NOT_IMPLEMENTED', 'ownerScope "platform" images are not supported');
      const artifact = await images.vmBuild(principalOf(request), name, tag, request.body?.teamId ?? null);
      return {
        success: true,
        message: `Corral's sandboxes are containers: ${artifact.fullImagePath} runs as docker_image as it is; no VM image is built`,
        status: 'COMPLETED' as const,
        fullImagePath: artifact.fullImagePath,
        images: [artifactView(artifact)],
      };
    },
  );

  app.post<{ Body: Static<typeof CheckImageBody> }>(
    '/template/check-docker-image',
    {
      schema: {
        tags: ['Template'],
        summary: 'Check Docker Image',
        body: CheckImageBody,
        response: { 200: Type.Object({ accessible: Type.Boolean(), details: Type.String() }), ...ERROR_RESPONSES },
      },
    },
    async (request) => images.checkDockerImage(principalOf(request), request.body.image, request.body.registry_credentials_id ?? null),
  );

  // The signed upload URL: no API key (the signature is the grant), any content type, the body
  // streamed to disk by the service with its own size cap.
  await app.register(async (upload) => {
    upload.removeAllContentTypeParsers();
    upload.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    for (const method of ['PUT', 'POST'] as const) {
      upload.route<{ Params: Static<typeof BuildIdParams>; Querystring: Static<typeof UploadQuery> }>({
        method,
        url: '/images/build/:build_id/context',
        config: { public: true },
        schema: {
          tags,
          summary: 'Upload a build context (Corral): the upload_url of POST /images/build',
          params: BuildIdParams,
          querystring: UploadQuery,
          response: { 200: Type.Object({ build_id: Type.String(), bytes: Type.Integer() }), 403: ErrorBody, 409: ErrorBody, 413: ErrorBody, ...ERROR_RESPONSES },
        },
        handler: async (request) => {
          const declared = request.headers['content-length'] !== undefined ? Number(request.headers['content-length']) : undefined;
          const { bytes } = await images.upload(
            request.params.build_id,
            request.query.expires,
            request.query.signature,
            declared !== undefined && Number.isFinite(declared) ? declared : undefined,
            request.raw,
          );
          return { build_id: request.params.build_id, bytes };
        },
      });
    }
  });
}
