// RFC 4180 CSV: the one reader and writer of the kit (results, paper tables, dataset files).

/** Parses CSV text into rows of fields. Errors name the source and the line. */
export function parseCsv(text: string, source = 'csv'): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let fieldStartLine = 1;
  let i = 0;
  const endField = () => {
    row.push(field);
    field = '';
  };
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        const next = text[i + 1];
        if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
          throw new Error(`${source}:${line}: unexpected character after closing quote`);
        }
      } else {
        if (c === '\n') line++;
        field += c;
      }
      i++;
      continue;
    }
    if (c === '"') {
      if (field !== '') throw new Error(`${source}:${line}: quote inside an unquoted field`);
      quoted = true;
      fieldStartLine = line;
    } else if (c === ',') {
      endField();
    } else if (c === '\n' || c === '\r') {
      endField();
      rows.push(row);
      row = [];
      if (c === '\r' && text[i + 1] === '\n') i++;
      line++;
    } else {
      field += c;
    }
    i++;
  }
  if (quoted) throw new Error(`${source}:${fieldStartLine}: unterminated quoted field`);
  if (field !== '' || row.length > 0) {
    endField();
    rows.push(row);
  }
  return rows;
}

/** Parses CSV with a header row into records; every row must have the header's width. */
export function parseCsvRecords(text: string, source = 'csv'): Record<string, string>[] {
  const rows = parseCsv(text, source);
  if (rows.length === 0) throw new Error(`${source}: empty file (no header row)`);
  const [header, ...body] = rows;
  return body.map((r, k) => {
    if (r.length !== header.length) {
      throw new Error(`${source}:${k + 2}: ${r.length} fields, header has ${header.length}`);
    }
    return Object.fromEntries(header.map((h, j) => [h, r[j]]));
  });
}

function quote(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function formatCsv(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return [header, ...rows].map((r) => r.map(quote).join(',')).join('\n') + '\n';
}
