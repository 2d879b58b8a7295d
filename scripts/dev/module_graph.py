#!/usr/bin/env python3
"""Prints which top-level module of src/ uses which (`crate::X` paths outside comments and unit
tests), and any import circle among them (strongly connected components). Run from the repo root:
`python3 scripts/dev/module_graph.py`; exits 1 when there is a circle."""
import os,re,sys,itertools
root='src'
edges={}
def modname(path):
    rel=os.path.relpath(path,root)[:-3]
    parts=rel.split('/')
    if parts[-1] in('mod','lib'): parts=parts[:-1]
    return parts[0] if parts else 'lib'
for dp,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); m=modname(p)
        if m in ('main','cli','lib'): continue
        s=open(p).read()
        s=re.sub(r'^\s*//.*$','',s,flags=re.M)
        s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*','',s,flags=re.S)
        for um in re.finditer(r'crate::(\w+)|use crate::\{([^;]*)\}',s):
            names = [um.group(1)] if um.group(1) else re.findall(r'(?:^|[,{\s])(\w+)(?=::|\s*[,}]|\s*$)', um.group(2))
            for t in names:
                if t and t!=m and os.path.exists(f'{root}/{t}.rs') or os.path.isdir(f'{root}/{t}'):
                    if t!=m: edges.setdefault(m,set()).add(t)
import collections
# find cycles via DFS
def cycles():
    res=[]
    for a in edges:
        for b in edges[a]:
            if a in edges.get(b,()): res.append((a,b))
    return res
for k in sorted(edges): print(k,'->',sorted(edges[k]))
# strongly connected components
idx={};low={};st=[];on=set();sccs=[];c=[0]
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: sccs.append(comp)
for v in list(edges): 
    if v not in idx: sc(v)
print('CYCLES:',sccs or 'none')
sys.exit(1 if sccs else 0)
