// Sanity check of benches/threejs.sh: what the built three.js x10 bundle computes (math, curves,
// colours, every export of each copy), printed as JSON to compare with the unbundled source.
const m = await import(process.argv[2]);
const out = [];
for (const T of m.default) {
  const q = new T.Quaternion().setFromEuler(new T.Euler(1, 2, 3));
  const v = new T.Vector3(1, 2, 3).applyQuaternion(q);
  const mat = new T.Matrix4().makeRotationX(0.5).multiply(new T.Matrix4().makeScale(2, 3, 4));
  const box = new T.Box3().setFromPoints([new T.Vector3(0, 0, 0), v]);
  const c = new T.Color('#ff8800').getHSL({});
  const curve = new T.CatmullRomCurve3([new T.Vector3(0,0,0), new T.Vector3(1,2,0), new T.Vector3(3,1,1)]);
  out.push([v.x, v.y, v.z, mat.determinant(), box.getSize(new T.Vector3()).length(), c.h, curve.getLength(), T.REVISION, Object.keys(T).length]);
}
console.log(JSON.stringify(out));
