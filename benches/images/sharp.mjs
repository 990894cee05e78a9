// sharp (libvips) on the same 12-megapixel JPEG as benches/image_thumbnail.rs: an 800-pixel-wide
// thumbnail as JPEG and WebP at quality 80, one image at a time (sharp.concurrency(1) and one
// libuv thread); CPU time is the per-core figure.
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
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < rounds; i++) await one();
  const per = Number(process.hrtime.bigint() - start) / 1e9 / rounds;
  const used = process.cpuUsage(cpuStart);
  const cpu = (used.user + used.system) / 1e6 / rounds;
  console.log(
    `sharp      ${format.padEnd(4)} ${first.info.width}x${first.info.height} ${String(first.data.length).padStart(7)} bytes  ${(per * 1000).toFixed(1).padStart(6)} ms/image  ${(cpu * 1000).toFixed(1).padStart(6)} ms cpu/image  ${(1 / cpu).toFixed(1).padStart(6)} images/s/core`,
  );
}
