import t from 'tap'
import { sep } from 'node:path'
t.equal(typeof sep, 'string')
