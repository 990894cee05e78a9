// sharp (libvips) on the same 12-megapixel JPEG as benches/image_thumbnail.rs: an 800-pixel-wide
// thumbnail as JPEG and WebP at quality 80, on one thread (sharp.concurrency(1) and one libuv
// thread, so the figure is per core).
import { readFileSync } from "node:fs";
import sharp from "sharp";

sharp.concurrency(1);
sharp.cache(false);
const input = readFileSync(process.argv[2]);
const rounds = Number(process.env.ROUNDS || 30);
for (const format of ["jpeg", "webp"]) {
  const one = () => sharp(input).resize(800)[format]({ quality: 80 }).toBuffer({ resolveWithObject: true });
  const first = await one();
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) await one();
  const per = Number(process.hrtime.bigint() - start) / 1e9 / rounds;
  console.log(
    `sharp      ${format.padEnd(4)} ${first.info.width}x${first.info.height} ${String(first.data.length).padStart(7)} bytes  ${(per * 1000).toFixed(1).padStart(6)} ms/image  ${(1 / per).toFixed(1).padStart(6)} images/s/core`,
  );
}
