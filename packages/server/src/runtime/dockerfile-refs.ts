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
  const substitute = (text: string): string | undefined => substituteArgs(text, args);
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
    if (stageCount === 0 && readGlobalArg(line, args)) continue;
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

/** `text` with `$NAME` and `${NAME}` replaced from `args`; undefined when one has no value or the result is empty. */
function substituteArgs(text: string, args: ReadonlyMap<string, string>): string | undefined {
  if (!text.includes('$')) return text;
  let ok = true;
  const out = text.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))|\$\{[^}]*\}?|\$/g, (_m, a?: string, b?: string) => {
    const value = args.get(a ?? b ?? '');
    if (value === undefined) ok = false;
    return value ?? '';
  });
  return ok && out !== '' ? out : undefined;
}

/** Records the default of an `ARG NAME=value` line in `args`; whether the line is an `ARG`. */
function readGlobalArg(line: string, args: Map<string, string>): boolean {
  const arg = /^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/i.exec(line);
  if (!arg?.[1]) return false;
  const value = (arg[2] ?? '').trim().replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  if (arg[2] !== undefined) args.set(arg[1], value);
  return true;
}

/**
 * The Dockerfile with each literal image reference of a `FROM` line and of `COPY`/`ADD
 * --from=<image>` replaced by `qualify(reference)` (left as it is when that returns undefined):
 * what a builder that cannot resolve short names (buildah in a user namespace of its own) is given,
 * with `busybox` written as `docker.io/library/busybox:latest`, as Docker would resolve it. A
 * reference with build arguments is written so too when global `ARG` defaults fill it (no build
 * arguments are passed, so a builder would use them). Stage names, stage numbers, `scratch`,
 * references left unfilled and instructions continued over several lines are left as they are.
 * Every other byte is kept.
 */
export function qualifyDockerfileImages(dockerfile: string, qualify: (image: string) => string | undefined): string {
  const stages = new Set<string>();
  const args = new Map<string, string>();
  let stageCount = 0;
  const rewrite = (ref: string): string => {
    if (/^["']/.test(ref) || /^\d+$/.test(ref)) return ref;
    const image = substituteArgs(ref, args);
    if (image === undefined || image.toLowerCase() === 'scratch' || stages.has(image.toLowerCase())) return ref;
    return qualify(image) ?? ref;
  };
  return dockerfile
    .split('\n')
    .map((line) => {
      const from = /^(\s*FROM\s+(?:--\S+\s+)*)(\S+)((?:\s+AS\s+(\S+))?\s*\r?)$/i.exec(line);
      if (from) {
        const [, head = '', ref = '', tail = '', stage] = from;
        const out = rewrite(ref);
        if (stage) stages.add(stage.toLowerCase());
        stageCount += 1;
        return `${head}${out}${tail}`;
      }
      if (stageCount === 0) readGlobalArg(line.replace(/\r$/, ''), args);
      if (!/^\s*(?:COPY|ADD)\s/i.test(line) || /\\\s*\r?$/.test(line)) return line;
      return line.replace(/(--from=)(\S+)/gi, (_whole, flag: string, ref: string) => `${flag}${rewrite(ref)}`);
    })
    .join('\n');
}
