/** The images a Dockerfile takes content from, as a builder resolving them by name would see them. */
export interface DockerfileImageRefs {
  /** Images of `FROM` lines and of `COPY --from=<image>`, in order, without stage names, stage numbers and `scratch`. */
  images: string[];
  /** References that name a build argument the scan could not replace with a global `ARG` default. */
  unresolved: string[];
}

/**
 * Every image a Dockerfile names in `FROM` and `COPY --from` (the two instructions through which
 * a builder that resolves names against its engine's images reads another image), with `$NAME`
 * and `${NAME}` replaced by the defaults of `ARG` lines before the first `FROM` (no build
 * arguments are passed, so the defaults are what a builder uses). Not a Dockerfile parser: it
 * reads those instructions so a caller can check each image before the builder sees it.
 */
export function scanDockerfileImages(dockerfile: string): DockerfileImageRefs {
  const args = new Map<string, string>();
  const stages = new Set<string>();
  const images: string[] = [];
  const unresolved: string[] = [];
  let stageCount = 0;
  const substitute = (text: string): string | undefined => {
    if (!text.includes('$')) return text;
    let ok = true;
    const out = text.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))|\$\{[^}]*\}?|\$/g, (_m, a?: string, b?: string) => {
      const value = args.get(a ?? b ?? '');
      if (value === undefined) ok = false;
      return value ?? '';
    });
    return ok && out !== '' ? out : undefined;
  };
  const add = (raw: string): void => {
    const image = substitute(raw);
    if (image === undefined) {
      if (!unresolved.includes(raw)) unresolved.push(raw);
      return;
    }
    if (image.toLowerCase() === 'scratch' || stages.has(image.toLowerCase())) return;
    if (!images.includes(image)) images.push(image);
  };
  const joined = dockerfile.replace(/\\[ \t]*\r?\n/g, ' ');
  for (const line of joined.split(/\r?\n/)) {
    const from = /^\s*FROM\s+((?:--\S+\s+)*)(\S+)(?:\s+AS\s+(\S+))?\s*$/i.exec(line);
    if (from?.[2]) {
      add(from[2]);
      if (from[3]) stages.add(from[3].toLowerCase());
      stageCount += 1;
      continue;
    }
    const arg = /^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/i.exec(line);
    if (arg?.[1] && stageCount === 0) {
      const value = (arg[2] ?? '').trim().replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
      if (arg[2] !== undefined) args.set(arg[1], value);
      continue;
    }
    const copy = /^\s*(?:COPY|ADD)\s+(.*)$/i.exec(line);
    if (copy?.[1]) {
      for (const flag of copy[1].matchAll(/--from=("[^"]*"|'[^']*'|\S+)/gi)) {
        const source = (flag[1] ?? '').replace(/^["'](.*)["']$/, '$1');
        if (/^\d+$/.test(source) || stages.has(source.toLowerCase())) continue;
        add(source);
      }
    }
  }
  return { images, unresolved };
}
