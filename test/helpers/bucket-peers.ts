/**
 * The peers of a bucket test file (STORAGE=s3 with a Redis lock): one real Ceph RGW with an empty
 * bucket and one real redis-server on the file's address, plus an admin S3 client on the gateway
 * for looking at keys directly; all three are stopped with the file's scope.
 */
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3'
import type { Scope } from './e2e/index.js'
import { startRgw, type Rgw } from './rgw.js'
import { startRedis, type Redis } from './redis.js'

export interface BucketPeers { rgw: Rgw, redis: Redis, admin: S3Client }

/** `redisPort`: another than 6379 when files share an address (see redis.ts). */
export async function startBucketPeers (scope: Scope, comment: (line: string) => void, o: { address: string, bucket: string, redisPort?: number }): Promise<BucketPeers> {
  const [rgw, redis] = await Promise.all([startRgw(o.address, scope.path('rgw')), startRedis(o.address, scope.dir, o.redisPort)])
  scope.defer('stop rgw', rgw.stop)
  scope.defer('stop redis', redis.stop)
  comment(`RGW ready in ${rgw.startMs} ms`)
  const admin = new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } })
  scope.defer('close admin client', () => admin.destroy())
  await admin.send(new CreateBucketCommand({ Bucket: o.bucket }))
  return { rgw, redis, admin }
}
