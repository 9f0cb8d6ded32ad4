/*
 * vm_diff.c — differential of the VM against a baseline build of calc/ (test/unit/vm_diff.sh builds
 * the baseline from a git revision with its symbols renamed old_*): every formula of the conformance
 * files and the fuzz corpus, compiled untyped, with all variables typed number / string and untyped
 * with a 5-byte string limit (so string results reach it: limit errors and their positions), each
 * evaluated on 40 random bindings (NULL, numbers incl. -0, inf, NaN, strings, booleans and invalid
 * values); results (bits), error classes, messages and positions must be identical, and
 * duet_eval_batch must give what duet_eval gives row by row. Not part of make check (it needs
 * the git history); run it when changing the VM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include "duet_calc.h"
duet_program *old_duet_compile(const char*, size_t, const duet_compile_options*, duet_error*);
duet_errclass old_duet_eval(const duet_program*, const duet_value*, duet_vm*, duet_value*, duet_error*);
duet_vm *old_duet_vm_new(void); size_t old_duet_program_nvars(const duet_program*); const char *old_duet_program_var(const duet_program*, size_t);
void old_duet_program_free(duet_program*);
static uint64_t st=88172645463325252ull; static uint64_t rnd(void){st^=st<<13;st^=st>>7;st^=st<<17;return st;}
static duet_value pick(void){ static const double nums[]={0,-0.0,1,-1,2.5,1e308,INFINITY,NAN,100,0.5,3,2.675,-7,1e-9,30};
 static const char*strs[]={"","a","Search","x y","SOCIAL","é"}; switch(rnd()%7){case 6: {duet_value v; v.type=DUET_T_ANY; v.u.num=1; return v;} case 0:return duet_null(); case 1: case 2: return duet_number(nums[rnd()%15]);
 case 3: {const char*s=strs[rnd()%6]; return duet_string(s,strlen(s));} case 4: return duet_bool(rnd()%2); default: return duet_number((double)(int)(rnd()%2001-1000)/8);} }
static duet_type want_t; static duet_type vt(void*a,const char*n,size_t l){(void)a;(void)n;(void)l;return want_t;}
static long cases,fails;
static int same(const duet_value*a,const duet_value*b){ if(a->type!=b->type) return 0; switch(a->type){case DUET_T_NUMBER: return memcmp(&a->u.num,&b->u.num,8)==0;
 case DUET_T_STRING: return a->u.str.len==b->u.str.len && memcmp(a->u.str.ptr,b->u.str.ptr,a->u.str.len)==0; case DUET_T_BOOL: return a->u.boolean==b->u.boolean; default: return 1;} }
static void one(const char*f,size_t len){
 for(int typed=0;typed<4;typed++){
  /* typed 3: untyped with a 5-byte string limit, so that string results hit it (positions of limit errors) */
  duet_error e1,e2; duet_compile_options o; duet_limits lim; memset(&o,0,sizeof o); memset(&lim,0,sizeof lim); want_t= typed==1?DUET_T_NUMBER:DUET_T_STRING; if(typed==1||typed==2){o.var_type=vt;}
  if(typed==3){lim.max_string=5; o.limits=&lim;}
  duet_program*p1=old_duet_compile(f,len,typed?&o:NULL,&e1),*p2=duet_compile(f,len,typed?&o:NULL,&e2);
  if(!p1||!p2){ if(!!p1!=!!p2||e1.cls!=e2.cls||strcmp(e1.message,e2.message)){fails++; if(fails<20) printf("COMPILE %.*s: %s | %s\n",(int)len,f,e1.message,e2.message);} cases++; if(p1)old_duet_program_free(p1); if(p2)duet_program_free(p2); continue;}
  size_t n=old_duet_program_nvars(p1); duet_vm*v1=old_duet_vm_new(),*v2=duet_vm_new(); duet_value vars[64];
  if(n>64) n=64;
  for(int k=0;k<40;k++){ for(size_t i=0;i<n;i++){ vars[i]=pick(); if(typed==1&&rnd()%4) vars[i]=duet_number((double)(int)(rnd()%200-100)/4);} 
   duet_value r1,r2; duet_errclass c1=old_duet_eval(p1,vars,v1,&r1,&e1), c2=duet_eval(p2,vars,v2,&r2,&e2); cases++;
   if(c1!=c2 || (c1==0 && !same(&r1,&r2)) || (c1 && (strcmp(e1.message,e2.message)||e1.line!=e2.line||e1.column!=e2.column))){ fails++; if(fails<20) printf("EVAL %.*s: cls %d/%d msg '%s'@%d:%d / '%s'@%d:%d\n",(int)len,f,c1,c2,c1?e1.message:"",e1.line,e1.column,c2?e2.message:"",e2.line,e2.column);} }
  /* batch == row by row */
  if(n<=8){ duet_value col[8*16],outb[16],r; size_t done; for(size_t i=0;i<n;i++) for(int r0=0;r0<16;r0++) col[i*16+r0]=pick();
   duet_errclass cb=duet_eval_batch(p2,col,16,16,v2,outb,&e2,&done);
   for(size_t r0=0;r0<done;r0++){ duet_value row[8]; for(size_t i=0;i<n;i++) row[i]=col[i*16+r0]; duet_value keep=outb[r0]; duet_vm*v3=duet_vm_new(); if(duet_eval(p2,row,v3,&r,&e1)!=0||!same(&r,&keep)){fails++; if(fails<20) printf("BATCH %.*s row %zu\n",(int)len,f,r0);} duet_vm_free(v3);} (void)cb; }
  duet_vm_free(v2); old_duet_program_free(p1); duet_program_free(p2);
 }
}
int main(int argc,char**argv){ char buf[70000];
 for(int a=1;a<argc;a++){ FILE*fp=fopen(argv[a],"rb"); if(!fp) continue; size_t n=fread(buf,1,sizeof buf-1,fp); fclose(fp); buf[n]=0;
  if(strstr(argv[a],".tsv")){ char*save; for(char*l=strtok_r(buf,"\n",&save);l;l=strtok_r(NULL,"\n",&save)){ if(*l=='#') continue; char*t=strchr(l,'\t'); if(!t) continue; one(l,(size_t)(t-l)); } }
  else { size_t len=strnlen(buf,n); one(buf,len); } }
 printf("%ld cases, %ld differ\n",cases,fails); return fails!=0; }
