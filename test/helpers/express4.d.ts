/** Express 4, installed as the `express4` alias beside Express 5: typed as Express (the API the tests use is the same). */
declare module 'express4' {
  import express from 'express';
  export default express;
}
