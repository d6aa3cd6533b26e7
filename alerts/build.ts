/** `npm run alerts`: regenerates alerts/streamscope.rules.yml from alerts/config.ts. */
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfig } from './config.js';
import { renderRules, RULES_FILE } from './rules.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(join(root, RULES_FILE), renderRules(defaultConfig));
process.stdout.write(`wrote ${RULES_FILE}\n`);
