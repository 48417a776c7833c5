const SVG = 'http://www.w3.org/2000/svg';

/** A small line chart of `values` between 0 and `max` (an SVG built with DOM calls, no markup strings). */
export function sparkline(values: number[], max: number): SVGSVGElement {
  const width = 240;
  const height = 48;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('preserveAspectRatio', 'none');
  const top = Math.max(max, ...values, Number.EPSILON);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 4)).toFixed(1)}`);
  if (points.length === 1) points.push(`${width},${points[0]?.split(',')[1] ?? height}`);
  const area = document.createElementNS(SVG, 'polygon');
  area.setAttribute('points', `0,${height} ${points.join(' ')} ${width},${height}`);
  area.setAttribute('class', 'spark-area');
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.join(' '));
  line.setAttribute('class', 'spark-line');
  svg.append(area, line);
  return svg;
}
