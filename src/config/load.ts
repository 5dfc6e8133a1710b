import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError, validateConfig, type Config } from './schema.js';

/** Parses the YAML text of `--config` or the ConfigMap key `config.yaml`. */
export function parseConfigText(text: string, source: string): Config {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new ConfigError('(file)', source, `is not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  return validateConfig(doc);
}

export async function loadConfigFile(path: string): Promise<Config> {
  return parseConfigText(await readFile(path, 'utf8'), path);
}
