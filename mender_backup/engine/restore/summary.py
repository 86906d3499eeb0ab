"""A restore's result (the dict `run` returns), for people."""

from __future__ import annotations

from ...output import human_bytes


def describe(s: dict) -> str:
    """The result of `run`, for people."""
    lines = [f"{'plan for' if s['dry_run'] else 'restored'} {s['backup']}:"]
    for d in s["drop"]:
        lines.append(f"  drop    {d['namespace']} ({d['documents']} documents)")
    for c in s["create"]:
        lines.append(f"  create  {c['namespace']} ({c['documents']} documents, "
                     f"{len(c['indexes'])} indexes)")
    for u in s["untouched"]:
        lines.append(f"  keep    {u} (not in the backup, left alone)")
    for k in s.get("skipped", []):
        lines.append(f"  skip    {k['namespace']} ({k['reason']})")
    lines += _describe_oplog(s.get("oplog") or {}, s["dry_run"])
    a = s["artifacts"]
    if a is not None:
        lines.append(f"  artifacts: copy {a['copy']} ({human_bytes(a['bytes'])}), {a['already_present']} already present")
    for t in s.get("tenant_stores", []):
        moved = f" (moved from {t['moved_from']}: its settings follow)" if t.get("moved_from") else ""
        lines.append(f"  artifacts of tenant {t['tenant']}: {t['type']} {t['bucket']}{moved}: copy {t['to_copy']}, "
                     f"{t['present']} already present")
    for name, action in (s.get("secrets") or {}).get("actions", {}).items():
        lines.append(f"  secret  {s['secrets']['namespace']}/{name}: {action}")
    if s["dry_run"]:
        lines.append("dry run: nothing was changed")
    else:
        lines.append("verified: counts and content digests match the backup" if s.get("verify", "full") == "full"
                     else "verified: counts match the backup (--verify counts: contents not read back)")
        for ns, n in sorted((s.get("expired") or {}).items()):
            lines.append(f"  expired {ns}: {n} documents past their TTL (restored and verified; MongoDB's "
                         f"TTL monitor deletes them within a minute)")
    return "\n".join(lines)


def _describe_oplog(o: dict, dry_run: bool) -> list[str]:
    if not o.get("in_archive") and not o.get("slices"):
        return []
    if not o.get("replay"):
        return [f"  oplog   {o.get('reason', 'not replayed')}"]
    r = o.get("replayed") or {}
    verb = "replay" if dry_run else "replayed"
    where = f" up to {r['last']['time']}" if r.get("last") else ""
    lines = [f"  oplog   {verb} {r.get('entries', 0)} entries{where}"
             + (f" from the archive and {len(o['slices'])} slice(s)" if o.get("slices") else "")]
    for why, n in sorted((r.get("skipped") or {}).items()):
        lines.append(f"  oplog   skip {n} ({why})")
    return lines
