import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { qualifyDockerfileImages, scanDockerfileImages } from './dockerfile-refs.js';

describe('scanDockerfileImages', () => {
  it('lists FROM and COPY --from images once, in order, without stages, stage numbers and scratch; global ARG defaults fill references', () => {
    const dockerfile = [
      '# syntax=docker/dockerfile:1',
      'ARG BASE=busybox',
      'ARG TOOLS="127.0.0.1:5000/corral/tools:1"',
      'FROM --platform=linux/amd64 python:3.11-slim AS build',
      'RUN echo FROM nothing',
      'ARG LATE=ignored',
      'from build as test',
      'FROM ${BASE}',
      'FROM scratch',
      'FROM \\',
      '  127.0.0.1:5000/corral/busybox:latest',
      'FROM python:3.11-slim',
      'COPY --from=build /a /a',
      'COPY --from=0 /b /b',
      'COPY --chown=1:1 --from=$TOOLS /bin/tool /bin/tool',
    ].join('\n');
    assert.deepEqual(scanDockerfileImages(dockerfile), {
      images: ['python:3.11-slim', 'busybox', '127.0.0.1:5000/corral/busybox:latest', '127.0.0.1:5000/corral/tools:1'],
      unresolved: [],
    });
  });

  it('reports references whose build argument has no global default (a stage ARG does not count)', () => {
    const dockerfile = ['FROM busybox AS a', 'ARG IMG=python:3', 'FROM $IMG', 'COPY --from=${OTHER} /x /x'].join('\n');
    assert.deepEqual(scanDockerfileImages(dockerfile), { images: ['busybox'], unresolved: ['$IMG', '${OTHER}'] });
  });
});

describe('qualifyDockerfileImages', () => {
  const full = (image: string): string => (image.includes('/') ? image : `docker.io/library/${image}${image.includes(':') ? '' : ':latest'}`);

  it('writes FROM and COPY --from images in full (global ARG defaults too), and leaves stages, numbers, scratch, unfilled arguments and every other byte', () => {
    const dockerfile = [
      'ARG BASE=python:3.11-slim',
      'FROM --platform=linux/amd64 busybox AS build',
      'RUN echo FROM busybox',
      'FROM ${BASE}',
      'FROM build AS again',
      'FROM $MISSING',
      'FROM scratch',
      'COPY --from=build /a /a',
      'COPY --from=0 /b /b',
      'COPY --chown=1:1 --from=alpine:3 /c /c',
      'ADD --from=127.0.0.1:5000/x/y:1 /d /d',
      'COPY --from=alpine \\',
      '  /e /e',
      'from  busybox  as  Last\r',
      '',
    ].join('\n');
    assert.equal(qualifyDockerfileImages(dockerfile, full), [
      'ARG BASE=python:3.11-slim',
      'FROM --platform=linux/amd64 docker.io/library/busybox:latest AS build',
      'RUN echo FROM busybox',
      'FROM docker.io/library/python:3.11-slim',
      'FROM build AS again',
      'FROM $MISSING',
      'FROM scratch',
      'COPY --from=build /a /a',
      'COPY --from=0 /b /b',
      'COPY --chown=1:1 --from=docker.io/library/alpine:3 /c /c',
      'ADD --from=127.0.0.1:5000/x/y:1 /d /d',
      'COPY --from=alpine \\',
      '  /e /e',
      'from  docker.io/library/busybox:latest  as  Last\r',
      '',
    ].join('\n'));
  });

  it('leaves a reference the qualifier cannot read as it is', () => {
    assert.equal(qualifyDockerfileImages('FROM Bad:Ref\n', () => undefined), 'FROM Bad:Ref\n');
  });
});
