/** The README's runnable examples: every ```js block that states its outputs (`console.log(…); // output`). */

export interface ReadmeExample {
  /** The `## ` section it is in. */
  readonly section: string;
  /** The block as a user would paste it into a `.mjs` file. */
  readonly source: string;
  /** What each `console.log(…); // output` line says it prints, in order. */
  readonly expected: string[];
}

const OUTPUT_LINE = /console\.log\(.*\); \/\/ (.+)$/gm;

export function readmeExamples(readme: string): ReadmeExample[] {
  return readme
    .split(/^## /m)
    .slice(1)
    .flatMap((part) => {
      const section = part.slice(0, part.indexOf('\n'));
      return [...part.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => ({
        section,
        source: m[1]!,
        expected: [...m[1]!.matchAll(OUTPUT_LINE)].map((o) => o[1]!.trim()),
      }));
    })
    .filter((e) => e.expected.length > 0);
}
