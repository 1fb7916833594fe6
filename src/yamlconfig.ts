/**
 * The shared front of every YAML file a user writes (node.yaml, testbed
 * topologies, the gateway DNS config): read it, parse it, insist on a mapping
 * with known top-level fields. Errors name the field and the reason.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigError } from './errors.js';
import { obj, onlyFields, type Obj } from './validate.js';

/** Parses text as a YAML mapping whose top-level keys are all in `known`. */
export function parseYamlMapping(text: string, known: readonly string[]): Obj {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new ConfigError('(file)', `not valid YAML: ${(err as Error).message}`);
  }
  const root = obj(doc, '(root)');
  onlyFields(root, '', known, 'expected one of');
  return root;
}

/** Reads a config file named by a command-line option. */
export function readConfigFile(path: string, option = '--config'): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(option, `cannot read ${path}: ${(err as Error).message}`);
  }
}
