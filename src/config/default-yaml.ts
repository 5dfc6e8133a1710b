import { FIELDS } from './schema.js';

/**
 * Every key with its default and its documentation as YAML comments: the
 * config.yaml of the DaemonSet's ConfigMap, generated so that it cannot
 * drift from the schema (a test compares the two).
 */
export function defaultConfigYaml(): string {
  const out: string[] = [];
  for (const f of Object.values(FIELDS)) {
    const doc = `${f.doc}${f.restart ? ' Needs a restart to change.' : ' Applied live.'}`.replace(/`/g, '');
    for (const line of wrap(doc, 78)) out.push(`# ${line}`);
    out.push(`${f.key}: ${f.shownDefault}`);
  }
  return `${out.join('\n')}\n`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}
