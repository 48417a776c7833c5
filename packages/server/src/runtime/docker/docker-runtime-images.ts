import type Docker from 'dockerode';
import type { RootfsImageConfig, RuntimeImage, RuntimeImages } from '../runtime-images.js';
import { importOciArchive, importRootfsToDocker, listLocalImages } from './docker-images.js';

/** The docker driver's image store: the Docker engine's images (`DOCKER_HOST`, else /var/run/docker.sock). */
export class DockerRuntimeImages implements RuntimeImages {
  constructor(private readonly docker?: Docker) {}

  async importRootfs(rootfsTar: string, reference: string, config: RootfsImageConfig = {}): Promise<RuntimeImage> {
    const id = await importRootfsToDocker(rootfsTar, reference, { ...config, ...this.options() });
    return { reference, id, source: 'rootfs' };
  }

  async importArchive(path: string, reference?: string): Promise<RuntimeImage> {
    const loaded = await importOciArchive(path, reference, this.options());
    return { reference: reference ?? loaded.references[0] ?? loaded.id, id: loaded.id, source: loaded.format };
  }

  async list(): Promise<RuntimeImage[]> {
    return (await listLocalImages(this.options())).flatMap((image) => image.tags.map((reference) => ({ reference, id: image.id, source: 'docker' })));
  }

  private options(): { docker?: Docker } {
    return this.docker ? { docker: this.docker } : {};
  }
}
