/**
 * crossdock's version, read once from package.json (next to dist/ in the image and in a checkout),
 * so `crossdock --version`, `GET /` and `crossdock_build_info` never disagree with the package.
 */
import { readFileSync } from 'node:fs'

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
